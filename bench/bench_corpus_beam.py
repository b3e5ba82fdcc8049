"""Corpus build on Apache Beam (local DirectRunner, 2 worker processes) against the
single-process build, on the same synthetic 100,000-cell input and config.

The input and config are those of bench_corpus_scale.py (its cached .h5ad in --data),
with 20,000 examples in one part, so one pipeline draws them all. Each build runs in a
fresh interpreter; seconds are the build alone (imports excluded), peak RSS is the parent
process's (Beam's workers are separate processes, reported beside it). Both builds must
write byte-identical records. Medians of --repeats runs each, alternating.

    .venv/bin/python bench/bench_corpus_beam.py [--repeats 3]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_corpus_scale as scale
from report import update_section

EXAMPLES = {"train": 18_000, "validation": 1_000, "test": 1_000}
WORKERS = 2


def worker(mode: str, path: str, out: str) -> None:
    """One build in this (fresh) process; prints {'build_s', 'records'} as JSON."""
    import warnings

    warnings.simplefilter("ignore")
    import tensorflow_datasets as tfds

    from c2s_jax.corpus.records import build_corpus

    tfds.disable_progress_bar()
    spec = scale.make_spec(path)
    config = dict(spec.config, examples=EXAMPLES, examples_per_part=sum(EXAMPLES.values()))
    import ml_collections

    from c2s_jax.corpus.config import corpus_spec

    spec = corpus_spec(ml_collections.ConfigDict(config))
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    options = [f"direct_num_workers={WORKERS}"]
    build_corpus(spec, Path(out), progress=False, beam=mode == "beam", beam_options=options)
    seconds = time.perf_counter() - began
    print(json.dumps({"build_s": seconds, "records": scale.records_digest(Path(out))}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default="/tmp/scalebench")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "PATH", "OUT"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    data = scale.prepare(Path(args.data), "100k", 0)
    runs: dict[str, list[dict]] = {"single": [], "beam": []}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for mode in runs:
                out = str(Path(work) / mode)
                command = [sys.executable, __file__, "--worker", mode, data["h5ad"], out]
                run = scale.measure(command)
                runs[mode].append(run)
                print(f"{mode}: {json.dumps(run)}", flush=True)
    build = {m: statistics.median(r["build_s"] for r in rs) for m, rs in runs.items()}
    peak = {m: statistics.median(r["peak_mib"] for r in rs) for m, rs in runs.items()}
    digests = {r["records"] for rs in runs.values() for r in rs}
    n = sum(EXAMPLES.values())
    lines = [
        "## Corpus build on Apache Beam vs one process",
        "",
        f"Command: `.venv/bin/python bench/bench_corpus_beam.py --repeats {args.repeats}`. "
        f"Input: the synthetic 100,000-cell .h5ad of bench_corpus_scale.py; its config with "
        f"{n:,} examples in one part. Beam: DirectRunner, {WORKERS} worker processes "
        "(multi_processing). Medians of the runs; fresh process per build.",
        "",
        "| build | runs | build (s) | examples/s | parent peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, label in (("single", "one process"), ("beam", f"Beam, {WORKERS} workers")):
        lines.append(
            f"| {label} | {len(runs[mode])} | {build[mode]:.1f} | {n / build[mode]:.0f} | "
            f"{peak[mode]:,.0f} |"
        )
    lines += [
        "",
        f"Beam / one process time: {build['beam'] / build['single']:.2f}x. Records "
        f"byte-identical across all runs and both builds: {'yes' if len(digests) == 1 else 'NO'}.",
    ]
    text = "\n".join(lines)
    print(text)
    update_section("bench_corpus_beam", text)


if __name__ == "__main__":
    main()
