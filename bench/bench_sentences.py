"""Cells/s of `c2s sentences` against cell2sentence's generate_vocabulary + generate_sentences.

Both run in one process tree on the same data: a synthetic 20,000 x 20,000 count matrix
with ~2,000 expressed genes per cell, and pbmc68k_reduced (as counts). Ours runs the whole
CLI path (backed .h5ad -> ranking -> Parquet + metadata with the inverse fit) in a fresh
subprocess per run, which also reports its peak RSS; the reference runs in memory on the
scanpy-normalized matrix, as its tutorial does. Figures are medians of several runs.

    .venv/bin/python bench/bench_sentences.py [--repeats 3] [--cells 20000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import median_seconds, update_section

OUT = Path(__file__).resolve().parent / "out"


def synthetic_counts(n_cells: int, n_genes: int, expressed: int, seed: int = 0) -> anndata.AnnData:
    """Counts with `expressed` non-zero genes per cell, drawn like UMI data (many ties)."""
    rng = np.random.default_rng(seed)
    gene_weights = rng.pareto(1.2, n_genes) + 1e-3
    gene_weights /= gene_weights.sum()
    indptr = np.arange(n_cells + 1, dtype=np.int64) * expressed
    indices = np.empty(n_cells * expressed, np.int32)
    for i in range(n_cells):
        indices[indptr[i] : indptr[i + 1]] = np.sort(
            rng.choice(n_genes, expressed, replace=False, p=gene_weights)
        )
    counts = (1 + rng.negative_binomial(1, 0.35, n_cells * expressed)).astype(np.float32)
    X = sp.csr_matrix((counts, indices, indptr), shape=(n_cells, n_genes))
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"GENE{j}" for j in range(n_genes)])
    return anndata.AnnData(X=X, obs=obs, var=var)


def run_ours_once(h5ad: Path, chunk_size: int, compression: str = "zstd") -> dict:
    """One `c2s sentences` run in a fresh interpreter: seconds, cells and peak RSS."""
    code = (
        "import json,time\n"
        "from c2s_jax.sentences.cell_sentences import SentenceOptions\n"
        "from c2s_jax.sentences.sentence_files import write_sentences\n"
        "t=time.perf_counter()\n"
        f"s=write_sentences([{str(h5ad)!r}], {str(OUT / 'bench.parquet')!r},"
        f" SentenceOptions(chunk_size={chunk_size}), progress=False,"
        f" compression={compression!r})\n"
        "dt=time.perf_counter()-t\n"
        "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(json.dumps({'seconds':dt,'cells':s.n_cells,'peak_mib':int(hwm.split()[1])/1024}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(h5ad: Path, repeats: int, compression: str = "zstd", chunk_size: int = 4096) -> dict:
    run_ours_once(h5ad, chunk_size)  # compiles and caches the kernels
    runs = [run_ours_once(h5ad, chunk_size, compression) for _ in range(repeats)]
    seconds = float(np.median([r["seconds"] for r in runs]))
    return {
        "cells_per_s": runs[0]["cells"] / seconds,
        "seconds": seconds,
        "peak_mib": max(r["peak_mib"] for r in runs),
    }


def ours_in_memory(counts: anndata.AnnData, repeats: int) -> dict:
    """The Python API on an in-memory AnnData, down to a list of sentence strings: the same
    work the reference does (plus the inverse fit), without reading or writing files."""
    from c2s_jax.sentences.cell_sentences import cell_sentences

    def run():
        cell_sentences(counts).sentences()

    run()  # loads the compiled kernels
    seconds, _ = median_seconds(run, repeats)
    return {"cells_per_s": counts.n_obs / seconds, "seconds": seconds}


def reference(counts: anndata.AnnData, repeats: int) -> dict:
    from cell2sentence.utils import generate_sentences, generate_vocabulary

    adata = counts.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata, base=10)

    def run():
        vocab = generate_vocabulary(adata)
        generate_sentences(adata, vocab)

    seconds, _ = median_seconds(run, repeats)
    return {"cells_per_s": adata.n_obs / seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)

    from c2s_jax.sentences.embedded import pbmc68k_counts

    inputs = {
        f"synthetic {args.cells:,} x 20,000, ~2,000 genes/cell": synthetic_counts(
            args.cells, 20_000, 2_000
        ),
        "pbmc68k_reduced (700 x 765, counts)": pbmc68k_counts(),
    }
    rows = []
    for name, counts in inputs.items():
        h5ad = OUT / f"{name.split()[0]}.h5ad"
        counts.write_h5ad(h5ad)
        ref = reference(counts, args.repeats)
        runs = {
            f"`c2s sentences` --compression {c}": ours(h5ad, args.repeats, c)
            for c in ("zstd", "lz4")
        }
        runs["`cell_sentences(adata).sentences()` in memory"] = ours_in_memory(counts, args.repeats)
        for how, mine in runs.items():
            ratio = mine["cells_per_s"] / ref["cells_per_s"]
            rows.append((name, how, mine, ref, ratio))
            print(
                f"{name}, {how}: ours {mine['cells_per_s']:,.0f} cells/s, cell2sentence "
                f"{ref['cells_per_s']:,.0f} cells/s -> {ratio:.1f}x",
                flush=True,
            )

    # Memory: peak RSS of one run at several sizes and chunk sizes (synthetic input).
    memory = []
    for n_cells, chunk in ((args.cells // 2, 2048), (args.cells, 2048), (args.cells, 512)):
        h5ad = OUT / f"memory_{n_cells}.h5ad"
        if not h5ad.exists():
            synthetic_counts(n_cells, 20_000, 2_000, seed=1).write_h5ad(h5ad)
        peak = run_ours_once(h5ad, chunk)["peak_mib"]
        memory.append((n_cells, chunk, peak))
        print(f"peak RSS {n_cells:,} cells, chunk {chunk}: {peak:,.0f} MiB", flush=True)

    if args.no_record:
        return
    lines = [
        "## Cell sentences: `c2s sentences` vs cell2sentence",
        "",
        f"Command: `.venv/bin/python bench/bench_sentences.py --repeats {args.repeats} "
        f"--cells {args.cells}`. Ours: the full CLI path (backed .h5ad -> Parquet + metadata "
        "with the inverse fit), fresh process per run. Peer: cell2sentence 1.2.0 "
        "`generate_vocabulary` + `generate_sentences` in memory on the scanpy-normalized "
        f"matrix. Medians of {args.repeats} runs.",
        "",
        "| input | ours | ours (cells/s) | cell2sentence (cells/s) | ratio |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {n} | {h} | {m['cells_per_s']:,.0f} | {r['cells_per_s']:,.0f} | {x:.1f}x |"
            for n, h, m, r, x in rows
        ),
        "",
        "Peak resident memory of one `c2s sentences` run (whole process, imports included):",
        "",
        "| cells | chunk size | peak RSS (MiB) |",
        "|---:|---:|---:|",
        *(f"| {n:,} | {c:,} | {p:,.0f} |" for n, c, p in memory),
    ]
    update_section("bench_sentences", "\n".join(lines))


if __name__ == "__main__":
    began = time.time()
    main()
    print(
        f"done in {time.time() - began:.0f} s; peak RSS of the driver "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )
