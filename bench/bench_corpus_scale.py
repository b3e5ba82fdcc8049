"""Corpus build at 100,000 and 1,000,000 cells: the streamed build against the in-memory one.

`c2s corpus build` streams (`c2s_jax.corpus.records.build_corpus`): one counting pass over
the cells, examples drawn from obs and sentence lengths, and each corpus part (and the
tokenizer sample) reads the ranked genes of only the cells it uses. The peer is the old
in-memory path: `load_dataset(..., all_genes=True)` ranks every cell and holds all genes,
then the tokenizer is trained the same way (`corpus_texts` + `train_tokenizer`) and
`CorpusWriter.write_part` writes the same parts (no corpus.json / cells.parquet, no
table-equivalence check; those are small).

Data: synthetic raw counts, N cells x 2,000 genes, 8 cell types with type-specific marker
genes (so sentences differ by type), 100-140 expressed genes per cell, obs `cell_type`,
`tissue` ("blood") and `organism` ("Homo sapiens"), deterministic from the seed. Each is
written as an .h5ad with a CSR X, chunk by chunk with h5py (the 1M-cell matrix is never in
memory), and as a `c2s sentences` Parquet table (that CLI run is timed too). Files are
cached in --data (default /tmp/scalebench) so reruns skip generation.

Config: configs/corpus/pbmc68k_multitask.py with the synthetic dataset, its task weights,
examples train 1,500 / validation 100 / test 100 (1,700), examples_per_part 2,000,
tokenizer vocab_size 1,000, training_examples 500, check_examples 32.

Each build runs in a fresh interpreter (`--worker`); the parent reads the child's wall
time and peak RSS (wait4 rusage; a watchdog kills an in-memory build above --peer-cap-gib
or --peer-limit-s). Build seconds are timed inside the worker around the build alone
(interpreter start and imports excluded); examples/s = 1,700 / build seconds. Streamed
builds: median of --repeats runs (--repeats-1m at 1M); in-memory: --peer-repeats runs,
skipped where the streamed build of the same file already took past --peer-limit-s (the
in-memory build draws the same examples and ranks every cell besides). Each run is saved
to DATA/runs.json as it ends, so an interrupted benchmark resumes (--fresh forgets them).

    .venv/bin/python bench/bench_corpus_scale.py [--repeats 3] [--repeats-1m 3] [--peer-repeats 1]
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, update_section

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "corpus" / "pbmc68k_multitask.py"
C2S = Path(sys.executable).parent / "c2s"
SIZES = {"100k": 100_000, "1M": 1_000_000}
N_GENES = 2_000
CELL_TYPES = (
    "T cell",
    "B cell",
    "natural killer cell",
    "monocyte",
    "dendritic cell",
    "platelet",
    "erythrocyte",
    "neutrophil",
)
TYPE_SHARES = np.array([0.30, 0.15, 0.10, 0.18, 0.07, 0.06, 0.06, 0.08])
MARKERS_PER_TYPE = 40
GENES_PER_CELL = (100, 140)  # inclusive range, mean 120
GEN_CHUNK = 10_000
EXAMPLES = dict(train=1500, validation=100, test=100)
N_EXAMPLES = sum(EXAMPLES.values())
GIB = 2**30


# --------------------------------------------------------------------------- data


def _model(seed: int):
    """(gene weights [T, G], mean counts [T, G]) of the synthetic expression model."""
    rng = np.random.default_rng([seed, 0])
    base_weight = rng.pareto(1.2, N_GENES) + 1e-3
    base_mu = rng.lognormal(0.0, 1.0, N_GENES)
    markers = rng.permutation(N_GENES)[: len(CELL_TYPES) * MARKERS_PER_TYPE]
    weights = np.tile(base_weight, (len(CELL_TYPES), 1))
    mu = np.tile(base_mu, (len(CELL_TYPES), 1))
    for t in range(len(CELL_TYPES)):
        own = markers[t * MARKERS_PER_TYPE : (t + 1) * MARKERS_PER_TYPE]
        weights[t, own] = base_weight.max() * 5  # nearly always expressed in type t
        mu[t, own] = 8.0 + 12.0 * rng.random(len(own))  # and highly
    return weights.astype(np.float32), mu


def _chunk(seed: int, chunk: int, n: int, weights, mu):
    """(types [n], data, indices, per-cell counts) of generation chunk `chunk`."""
    rng = np.random.default_rng([seed, 1, chunk])
    types = rng.choice(len(CELL_TYPES), n, p=TYPE_SHARES)
    wanted = rng.integers(GENES_PER_CELL[0], GENES_PER_CELL[1] + 1, n)
    # Weighted sampling without replacement: the smallest Exp(w) keys (per cell).
    keys = rng.standard_exponential((n, N_GENES), dtype=np.float32) / weights[types]
    top = np.argpartition(keys, GENES_PER_CELL[1], axis=1)[:, : GENES_PER_CELL[1]]
    order = np.argsort(np.take_along_axis(keys, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    del keys
    top = np.where(np.arange(GENES_PER_CELL[1]) < wanted[:, None], top, N_GENES)
    top.sort(axis=1)
    keep = top < N_GENES
    indices = top[keep].astype(np.int32)
    rows = np.repeat(np.arange(n), wanted)
    data = (1 + rng.poisson(mu[types[rows], indices])).astype(np.float32)
    return types, data, indices, wanted


def write_h5ad(path: Path, n_cells: int, seed: int) -> None:
    """Synthetic counts as an .h5ad with CSR X, written chunk by chunk with h5py."""
    import anndata
    import h5py
    import pandas as pd

    weights, mu = _model(seed)
    tmp = path.with_suffix(".tmp.h5ad")
    types = np.concatenate(
        [
            np.random.default_rng([seed, 1, c]).choice(
                len(CELL_TYPES), min(GEN_CHUNK, n_cells - c * GEN_CHUNK), p=TYPE_SHARES
            )
            for c in range(-(-n_cells // GEN_CHUNK))
        ]
    )
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(types, CELL_TYPES),
            "tissue": pd.Categorical(["blood"] * n_cells),
            "organism": pd.Categorical(["Homo sapiens"] * n_cells),
        },
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(index=pd.Index([f"GENE{j}" for j in range(N_GENES)]))
    anndata.AnnData(obs=obs, var=var).write_h5ad(tmp)  # obs/var only; X below
    del obs, types
    with h5py.File(tmp, "a") as f:
        if "X" in f:
            del f["X"]
        group = f.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array([n_cells, N_GENES], np.int64)
        chunks = (1 << 18,)
        data = group.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=chunks)
        indices = group.create_dataset("indices", (0,), np.int32, maxshape=(None,), chunks=chunks)
        indptr = group.create_dataset("indptr", (n_cells + 1,), np.int64)
        indptr[0] = 0
        nnz = 0
        for c in range(-(-n_cells // GEN_CHUNK)):
            first = c * GEN_CHUNK
            n = min(GEN_CHUNK, n_cells - first)
            _, values, cols, per_cell = _chunk(seed, c, n, weights, mu)
            data.resize((nnz + len(values),))
            indices.resize((nnz + len(values),))
            data[nnz:] = values
            indices[nnz:] = cols
            indptr[first + 1 : first + n + 1] = nnz + np.cumsum(per_cell)
            nnz += len(values)
    backed = anndata.read_h5ad(tmp, backed="r")  # must read as anndata's own layout
    assert backed.shape == (n_cells, N_GENES), backed.shape
    head = backed.X[:3]
    assert head.shape == (3, N_GENES) and head.nnz >= 3 * GENES_PER_CELL[0], head
    assert list(backed.obs.columns) == ["cell_type", "tissue", "organism"]
    backed.file.close()
    tmp.replace(path)


def prepare(data_dir: Path, label: str, seed: int) -> dict:
    """The cached .h5ad and Parquet table of one size (generated when absent)."""
    n_cells = SIZES[label]
    h5ad = data_dir / f"synthetic_{label}.h5ad"
    table = data_dir / f"synthetic_{label}.parquet"
    record = data_dir / f"synthetic_{label}.json"
    info = json.loads(record.read_text()) if record.exists() else {}
    if not h5ad.exists() or info.get("seed") != seed:
        began = time.perf_counter()
        write_h5ad(h5ad, n_cells, seed)
        info = {"seed": seed, "generate_s": time.perf_counter() - began}
        table.unlink(missing_ok=True)
        print(f"{label}: wrote {h5ad} in {info['generate_s']:.0f} s", flush=True)
    if not table.exists() or info.get("sentences", {}).get("peak_source") != "/usr/bin/time":
        command = [
            str(C2S), "sentences", str(h5ad), str(table),
            "--obs", "cell_type", "tissue", "organism", "--no-progress",
        ]  # fmt: skip
        run = measure(command)
        info["sentences"] = {**run, "peak_source": "/usr/bin/time"}
        print(
            f"{label}: c2s sentences {run['wall_s']:.0f} s, {run['peak_mib']:,.0f} MiB",
            flush=True,
        )
    record.write_text(json.dumps(info, indent=1))
    info["h5ad"], info["parquet"] = str(h5ad), str(table)
    info["h5ad_mib"] = h5ad.stat().st_size / 2**20
    info["parquet_mib"] = table.stat().st_size / 2**20
    return info


# --------------------------------------------------------------------------- builds


def make_spec(path: str):
    from c2s_jax.config_loading import load_config
    from c2s_jax.corpus.config import corpus_spec

    config = load_config(CONFIG)
    config.datasets = [
        dict(
            name="synthetic",
            path=path,
            cell_type_key="cell_type",
            tissue_key="tissue",
            organism_key="organism",
            group_keys=("cell_type",),
        )
    ]
    config.examples = dict(EXAMPLES)
    config.examples_per_part = 2000
    config.tokenizer.vocab_size = 1000
    config.tokenizer.training_examples = 500
    config.tokenizer.check_examples = 32
    return corpus_spec(config)


def worker(mode: str, path: str, out: str) -> None:
    """One build in this (fresh) process; prints {'build_s', 'splits'} as JSON."""
    import warnings

    warnings.simplefilter("ignore")
    import tensorflow_datasets as tfds

    from c2s_jax.corpus.records import build_corpus

    tfds.disable_progress_bar()
    spec = make_spec(path)
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    if mode == "streamed":
        meta = build_corpus(spec, out, progress=False)
        splits = meta["splits"]
    else:
        splits = build_in_memory(spec, out)
    seconds = time.perf_counter() - began
    hwm = _status_kib("self", "VmHWM") / 1024
    print(
        json.dumps(
            {
                "build_s": seconds,
                "splits": splits,
                "records": records_digest(out),
                "hwm_mib": hwm,
            }
        )
    )


def build_in_memory(spec, out: Path) -> dict:
    """The old path: every cell ranked and held, then the same tokenizer and parts."""
    from c2s_jax.corpus import records
    from c2s_jax.corpus.cells import load_dataset
    from c2s_jax.corpus.prompts.formatter import Templates
    from c2s_jax.corpus.tasks import ExampleFactory
    from c2s_jax.corpus.tokenizer import ExampleEncoder, Tokenizer, train_tokenizer

    datasets = [
        load_dataset(d, spec.split, spec.seed, spec.spatial_neighbors, True, spec.chunk_size)
        for d in spec.datasets
    ]
    factory = ExampleFactory(spec, datasets, Templates.load())
    model = out / "tokenizer" / "c2s.model"
    texts = records.corpus_texts(factory, spec.tokenizer.training_examples)
    train_tokenizer(texts, model, spec.tokenizer.vocab_size, records.gene_symbols(datasets))
    tokenizer = Tokenizer(model, spec.tokenizer.family)
    writer = records.CorpusWriter(
        spec, factory, ExampleEncoder(tokenizer, spec.tokenizer.pre_tokenized)
    )
    splits = {}
    for part in range(records.n_parts(spec)):
        counts = writer.write_part(out / records.RECORDS_DIR, part)
        for key, value in counts.items():
            split, sep, _ = key.partition("/")
            if sep and split in EXAMPLES:
                splits[split] = splits.get(split, 0) + value
    return splits


def records_digest(out: Path) -> str:
    """sha256 over the ArrayRecord shards (names and bytes), to compare builds."""
    digest = hashlib.sha256()
    for shard in sorted((out / "records").rglob("*.array_record*")):
        digest.update(shard.name.encode())
        digest.update(shard.read_bytes())
    return digest.hexdigest()[:16]


def measure(command: list[str], cap_gib: float | None = None, limit_s: float | None = None):
    """Runs `command` under /usr/bin/time; wall seconds, peak RSS (MiB) and its last
    stdout line (JSON, when it prints one).

    The peak comes from /usr/bin/time (the command's own maximum RSS): the rusage a parent
    reads with wait4 also carries the high-water mark of the process that forked it. With
    a cap or limit a watchdog kills the run when its RSS or time goes past it ('killed'
    then says why).
    """
    timing = OUT_LOG.with_suffix(".time")
    began = time.perf_counter()
    stdout = open(OUT_LOG, "w+")  # noqa: SIM115 - read back below
    child = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M %e", "-o", str(timing), *command],
        stdout=stdout,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    killed = None
    while child.poll() is None:
        elapsed = time.perf_counter() - began
        if cap_gib is not None:
            rss = _tree_rss_gib(child.pid)
            if rss > cap_gib:
                killed = f"RSS {rss:.1f} GiB > {cap_gib} GiB after {elapsed:.0f} s"
        if limit_s is not None and elapsed > limit_s:
            killed = f"over {limit_s:.0f} s"
        if killed:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            break
        time.sleep(0.25)
    wall = time.perf_counter() - began
    stdout.seek(0)
    text = stdout.read()
    stdout.close()
    if killed is None and child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{text[-4000:]}")
    peak_kib = None
    if killed is None:
        peak_kib = int(timing.read_text().strip().splitlines()[-1].split()[0])
    result = {
        "wall_s": wall,
        "peak_mib": peak_kib / 1024 if peak_kib is not None else None,
        "killed": killed,
    }
    lines = text.strip().splitlines()
    if killed is None and lines and lines[-1].startswith("{"):
        result.update(json.loads(lines[-1]))
    return result


def _tree_rss_gib(pid: int) -> float:
    """RSS of `pid` and its children (the command under /usr/bin/time)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        with contextlib.suppress(OSError):
            total += _status_kib(p, "VmRSS") / 2**20
    return total


def _status_kib(pid: int | str, field: str) -> int:
    """A memory field of /proc/PID/status, in KiB (0 when absent)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def build_runs(mode: str, path: str, repeats: int, work: Path, cache: dict, **watch) -> dict:
    """`repeats` builds (fewer when one is killed); runs already in `cache` are reused, so
    an interrupted benchmark resumes where it stopped."""
    runs = []
    for r in range(repeats):
        key = f"{mode}|{Path(path).name}|{r}"
        run = cache["runs"].get(key)
        if run is None:
            command = [sys.executable, __file__, "--worker", mode, path, str(work / "corpus")]
            began = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            run = {**measure(command, **watch), "at": began, "load": os.getloadavg()[0]}
            cache["runs"][key] = run
            cache["path"].write_text(json.dumps({k: v for k, v in cache.items() if k != "path"}))
        runs.append(run)
        print(f"  {mode} {Path(path).name} run {r + 1}: " + _describe(run), flush=True)
        if run["killed"]:
            break
    done = [r for r in runs if not r["killed"]]
    if not done:
        return {"skipped": runs[-1]["killed"], "runs": runs}
    return {
        "build_s": statistics.median(r["build_s"] for r in done),
        "process_s": statistics.median(r["wall_s"] for r in done),
        "peak_mib": statistics.median(r["peak_mib"] for r in done),
        "peak_max_mib": max(r["peak_mib"] for r in done),
        "n": len(done),
        "splits": done[-1]["splits"],
        "records": sorted({r["records"] for r in done}),
        "runs": runs,
    }


def _describe(run: dict) -> str:
    if run["killed"]:
        return f"killed ({run['killed']})"
    return (
        f"build {run['build_s']:.1f} s (process {run['wall_s']:.1f} s), peak "
        f"{run['peak_mib']:,.0f} MiB (VmHWM {run['hwm_mib']:,.0f}), splits {run['splits']}, "
        f"records {run['records']}"
    )


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="streamed runs at 100k")
    parser.add_argument("--repeats-1m", type=int, default=3, help="streamed runs at 1M")
    parser.add_argument("--peer-repeats", type=int, default=1, help="in-memory runs per size")
    parser.add_argument("--peer-cap-gib", type=float, default=12.0)
    parser.add_argument("--peer-limit-s", type=float, default=900.0)
    parser.add_argument("--data", type=Path, default=Path("/tmp/scalebench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--fresh", action="store_true", help="forget runs measured before")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    global OUT_LOG
    OUT_LOG = args.data / "child.log"
    work = args.data / "work"
    work.mkdir(exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()[0]

    data = {label: prepare(args.data, label, args.seed) for label in SIZES}
    cache_path = args.data / "runs.json"
    cache = {"version": RUNS_VERSION, "seed": args.seed, "runs": {}}
    if cache_path.exists() and not args.fresh:
        kept = json.loads(cache_path.read_text())
        if (kept.get("version"), kept.get("seed")) == (RUNS_VERSION, args.seed):
            cache = kept
    cache["path"] = cache_path
    results = {}
    for label in SIZES:
        streamed_repeats = args.repeats if label == "100k" else args.repeats_1m
        print(f"{label}:", flush=True)
        h5ad, table = data[label]["h5ad"], data[label]["parquet"]
        results[label] = {
            "streamed h5ad": build_runs("streamed", h5ad, streamed_repeats, work, cache),
            "streamed Parquet": build_runs("streamed", table, streamed_repeats, work, cache),
        }
        # The in-memory build draws the same examples (drawing dominates) and ranks every
        # cell besides: when the streamed build already took past the limit, so would it.
        streamed_s = results[label]["streamed h5ad"].get("build_s", 0.0)
        if streamed_s > args.peer_limit_s:
            reason = (
                f"predicted over {args.peer_limit_s:.0f} s: it draws the same examples as the "
                f"streamed build ({streamed_s:.0f} s) and ranks all {SIZES[label]:,} cells too"
            )
            print(f"  memory {Path(h5ad).name}: skipped, {reason}", flush=True)
            results[label]["in memory h5ad"] = {"skipped": reason, "runs": []}
        else:
            watch = dict(cap_gib=args.peer_cap_gib, limit_s=args.peer_limit_s)
            results[label]["in memory h5ad"] = build_runs(
                "memory", h5ad, args.peer_repeats, work, cache, **watch
            )
    load_after = os.getloadavg()[0]
    finished = datetime.datetime.now(datetime.UTC)
    started = min(
        [started] + [datetime.datetime.fromisoformat(r["at"]) for r in cache["runs"].values()]
    )
    shutil.rmtree(work, ignore_errors=True)
    everything = {"data": data, "results": results}
    (args.data / "results.json").write_text(json.dumps(everything, indent=1))

    lines = report(args, data, results, started, finished, load_before, load_after)
    print("\n".join(lines))
    if not args.no_record:
        update_section("bench_corpus_scale", "\n".join(lines))


def report(args, data, results, started, finished, load_before, load_after) -> list[str]:
    command = (
        f".venv/bin/python bench/bench_corpus_scale.py --repeats {args.repeats} "
        f"--repeats-1m {args.repeats_1m} --peer-repeats {args.peer_repeats}"
    )
    modes = list(results["100k"])
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--short", "--", "c2s_jax").splitlines()
    code = f"c2s_jax at commit {commit}" + (
        f" with uncommitted changes to {', '.join(line.split()[-1] for line in dirty)}"
        if dirty
        else ""
    )
    lines = [
        "## Corpus build at 100k and 1M cells: streamed vs in memory",
        "",
        f"Command: `{command}`. Machine: {machine()} (2 cores shared with other work; "
        f"1-minute load average {load_before:.2f} before, {load_after:.2f} after). Run "
        f"{started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC (`date -u`); {code}.",
        "",
        "Data: synthetic raw counts x 2,000 genes, 8 cell types with 40 marker genes each, "
        "100-140 expressed genes per cell (mean 120), obs cell_type / tissue / organism; "
        "CSR .h5ad written chunk by chunk with h5py, and its `c2s sentences ... --obs "
        "cell_type tissue organism` Parquet table. Config: "
        "`configs/corpus/pbmc68k_multitask.py` on that dataset with 1,700 examples "
        "(train 1,500, validation 100, test 100; one part), tokenizer vocab 1,000 trained "
        "on 500 examples, 32 checked. Streamed: `build_corpus` (counting pass, then each "
        "part reads only the genes of the cells it uses). In memory: "
        "`load_dataset(..., all_genes=True)`, the tokenizer trained the same way, then "
        "`CorpusWriter.write_part`. Fresh process per build; seconds are the build alone "
        "(imports excluded), peak RSS is the whole process (TensorFlow included). "
        "Medians of the runs in column n.",
        "",
        "| cells | input | n | build (s) | examples/s | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label in SIZES:
        for mode in modes:
            r = results[label][mode]
            if "build_s" not in r:
                lines.append(f"| {label} | {mode} | 0 | skipped: {r['skipped']} | | |")
                continue
            lines.append(
                f"| {label} | {mode} | {r['n']} | {r['build_s']:.1f} | "
                f"{N_EXAMPLES / r['build_s']:.1f} | {r['peak_mib']:,.0f} |"
            )
    lines += ["", "| input | 1M / 100k time | 1M / 100k peak RSS |", "|---|---:|---:|"]
    ratios = {}
    for mode in modes:
        small, large = results["100k"][mode], results["1M"][mode]
        if "build_s" in small and "build_s" in large:
            ratios[mode] = (
                large["build_s"] / small["build_s"],
                large["peak_mib"] / small["peak_mib"],
            )
            lines.append(f"| {mode} | {ratios[mode][0]:.2f}x | {ratios[mode][1]:.2f}x |")
        else:
            lines.append(f"| {mode} | n/a | n/a |")
    lines += ["", "| cells | streamed / in memory time | streamed / in memory peak RSS |"]
    lines.append("|---|---:|---:|")
    for label in SIZES:
        peer = results[label]["in memory h5ad"]
        for mode in ("streamed h5ad", "streamed Parquet"):
            r = results[label][mode]
            if "build_s" in peer and "build_s" in r:
                lines.append(
                    f"| {label}, {mode} | {r['build_s'] / peer['build_s']:.2f}x | "
                    f"{r['peak_mib'] / peer['peak_mib']:.2f}x |"
                )
            else:
                lines.append(f"| {label}, {mode} | n/a (in-memory skipped) | n/a |")
    lines += [
        "",
        "| data | cells | .h5ad (MiB) | Parquet (MiB) | `c2s sentences` (s) | its peak RSS (MiB) |",
    ]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for label, d in data.items():
        s = d.get("sentences", {})
        lines.append(
            f"| {label} | {SIZES[label]:,} | {d['h5ad_mib']:,.0f} | {d['parquet_mib']:,.0f} | "
            f"{s.get('wall_s', float('nan')):.0f} | {s.get('peak_mib', float('nan')):,.0f} |"
        )
    lines += ["", "Goals for the streamed builds (each input):", ""]
    for mode in ("streamed h5ad", "streamed Parquet"):
        if mode not in ratios:
            lines.append(f"- {mode}: not measured at both sizes")
            continue
        time_ratio, rss_ratio = ratios[mode]
        peak = max(results[label][mode]["peak_max_mib"] for label in SIZES)
        lines.append(
            f"- {mode}: peak RSS within 20% from 100k to 1M ({rss_ratio:.2f}x): "
            f"{'met' if abs(rss_ratio - 1) <= 0.2 else 'NOT met'}; under 2 GiB (largest run "
            f"{peak:,.0f} MiB): {'met' if peak < 2048 else 'NOT met'}; build time within 2x "
            f"({time_ratio:.2f}x): {'met' if time_ratio <= 2.0 else 'NOT met'}."
        )
    digests = {
        label: {mode: r.get("records") for mode, r in results[label].items()} for label in SIZES
    }
    same = all(len({tuple(v) for v in d.values() if v}) == 1 for d in digests.values())
    lines += [
        "",
        "ArrayRecord shards byte-identical across runs and between streamed (h5ad, "
        f"Parquet) and in-memory builds of the same data: {'yes' if same else 'NO'} "
        f"({json.dumps(digests)}).",
        f"Python {platform.python_version()}.",
    ]
    return lines


def _git(*argv: str) -> str:
    done = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


OUT_LOG = Path("/tmp/scalebench/child.log")
RUNS_VERSION = 1  # bump when what a run measures changes (cached runs are then ignored)

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5])
    else:
        main()
