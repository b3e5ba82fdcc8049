"""Our streaming readers against the libraries' readers on the same files: time and peak
memory of `c2s sentences` on each input format.

Ours streams every format in blocks of cells (`c2s_jax.sentences.readers`). The peers read the
whole matrix into memory with the library a scanpy user would call (scanpy's
`read_10x_h5` / `read_10x_mtx`, anndata's `read_h5ad`), then run the same in-memory
sentence code, so the difference is the reading. A loom file has no peer here:
anndata's `read_loom` needs loompy, which is not installed. Each run is a fresh process
reporting its wall time and peak RSS; figures are medians of several runs.

    .venv/bin/python bench/bench_input_readers.py [--repeats 3] [--cells 20000]
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sentences import synthetic_counts
from report import update_section

from tests.support.format_writers import write_10x_h5_v3, write_loom, write_mtx

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "out" / "readers"

# How each peer reads a whole input into memory.
PEER_READ = {
    "10x h5": "import scanpy as sc; adata = sc.read_10x_h5(PATH)",
    "10x mtx.gz": "import scanpy as sc; adata = sc.read_10x_mtx(PATH)",
    "h5ad (CSR)": "import anndata; adata = anndata.read_h5ad(PATH)",
    "h5ad (CSC)": "import anndata; adata = anndata.read_h5ad(PATH)",
}


def one_run(path: Path, peer: str | None) -> dict:
    """Sentences of `path` in a fresh interpreter: streamed (peer None) or read whole by
    the peer's reader first. Returns seconds and peak RSS (MiB)."""
    if peer is None:
        work = (
            "from c2s_jax.sentences.sentence_files import write_sentences\n"
            f"write_sentences([{str(path)!r}], {str(OUT / 'out.parquet')!r}, progress=False)\n"
        )
    else:
        work = (
            PEER_READ[peer].replace("PATH", repr(str(path)))
            + "\nfrom c2s_jax.sentences.sentence_files import write_sentences\n"
            f"write_sentences([adata], {str(OUT / 'out.parquet')!r}, progress=False)\n"
        )
    code = (
        "import json, time, warnings\nwarnings.simplefilter('ignore')\n"
        "began = time.perf_counter()\n" + work + "seconds = time.perf_counter() - began\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(json.dumps({'seconds': seconds, 'peak_mib': int(hwm.split()[1]) / 1024}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(path: Path, peer: str | None, repeats: int) -> dict:
    runs = [one_run(path, peer) for _ in range(repeats)]
    return {
        "seconds": float(np.median([r["seconds"] for r in runs])),
        "peak_mib": float(np.median([r["peak_mib"] for r in runs])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=5_000)
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    counts = synthetic_counts(args.cells, args.genes, 800)
    counts.var["gene_ids"] = [f"ENSG{j:011d}" for j in range(args.genes)]
    counts.obs["cell_type"] = "T"  # the loom writer stores one cell column
    inputs = {}
    write_10x_h5_v3(counts, OUT / "cells.h5", extra_feature=False)
    inputs["10x h5"] = OUT / "cells.h5"
    write_mtx(counts, OUT / "mtx", version=3)
    inputs["10x mtx.gz"] = OUT / "mtx"
    counts.write_h5ad(OUT / "csr.h5ad")
    inputs["h5ad (CSR)"] = OUT / "csr.h5ad"
    column_major = counts.copy()
    column_major.X = sp.csc_matrix(counts.X)
    column_major.write_h5ad(OUT / "csc.h5ad")
    inputs["h5ad (CSC)"] = OUT / "csc.h5ad"
    write_loom(counts, OUT / "cells.loom")
    inputs["loom"] = OUT / "cells.loom"

    one_run(inputs["h5ad (CSR)"], None)  # loads the compiled kernels into the cache
    rows = []
    for name, path in inputs.items():
        ours = median_run(path, None, args.repeats)
        peer = median_run(path, name, args.repeats) if name in PEER_READ else None
        rows.append((name, ours, peer))
        line = f"{name}: ours {ours['seconds']:.1f} s, {ours['peak_mib']:,.0f} MiB"
        if peer:
            line += (
                f"; peer {peer['seconds']:.1f} s, {peer['peak_mib']:,.0f} MiB -> time "
                f"{peer['seconds'] / ours['seconds']:.2f}x, memory "
                f"{peer['peak_mib'] / ours['peak_mib']:.2f}x"
            )
        print(line, flush=True)

    if args.no_record:
        return
    nnz = counts.X.nnz

    def peer_cells(name, ours, peer):
        if peer is None:
            return "| n/a (anndata.read_loom needs loompy) | | | |"
        return (
            f"| `{PEER_READ[name].split('; ')[1].split(' = ')[1].replace('PATH', 'path')}` "
            f"| {peer['seconds']:.1f} | {peer['peak_mib']:,.0f} | "
            f"{peer['seconds'] / ours['seconds']:.2f}x / "
            f"{peer['peak_mib'] / ours['peak_mib']:.2f}x |"
        )

    table = []
    for name, ours, peer in rows:
        mine = f"| {name} | {ours['seconds']:.1f} | {ours['peak_mib']:,.0f} "
        table.append(mine + peer_cells(name, ours, peer))
    lines = [
        "## Input readers: streamed by `c2s sentences` vs read whole by scanpy / anndata",
        "",
        f"Command: `.venv/bin/python bench/bench_input_readers.py --repeats {args.repeats} "
        f"--cells {args.cells} --genes {args.genes}`. Synthetic counts, {args.cells:,} cells x "
        f"{args.genes:,} genes, {nnz:,} nonzeros (800 genes per cell). Ours: the whole "
        "`write_sentences` path streaming the file in blocks of 4,096 cells. Peer: the "
        "library reader a scanpy user calls, then the same in-memory sentence code. Fresh "
        f"process per run (imports included); medians of {args.repeats} runs. Ratio: peer / "
        "ours (above 1: ours is faster / smaller).",
        "",
        "| input | ours (s) | ours peak RSS (MiB) | peer | peer (s) | peer peak RSS (MiB) "
        "| time / memory ratio |",
        "|---|---:|---:|---|---:|---:|---:|",
        *table,
    ]
    update_section("bench_input_readers", "\n".join(lines))


if __name__ == "__main__":
    main()
