"""Packing corpus examples into training rows: ours (train/packing.py, first-fit
decreasing over a window of examples) against grain's own packers
(`grain.experimental.FirstFitPackIterDataset` and `BestFitPackIterDataset`), on the same
examples in the same order.

What counts for training is how many rows the same examples need (every row costs a
full step's compute, padding included), so the table gives rows, the fraction of row
positions holding tokens, examples per second of packing on one core, and the size of
the iterator's checkpointed state. grain's packers fill `num_packing_bins` rows in
arrival order and emit them all when an example fits none; ours sorts a window of
examples longest first before filling, which is what lets it leave less padding.

The examples are the training split of the embedded pbmc68k corpus built as the README's
demo builds it (rows of 256 tokens), built once into bench/out/packing; `--corpus DIR`
takes any other corpus.

    .venv/bin/python bench/bench_packing.py [--corpus DIR] [--seq-len 256] [--repeats 3]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import grain
import grain.experimental as grain_experimental
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, update_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "packing"
DEMO_CORPUS = ROOT / "configs" / "corpus" / "pbmc68k_multitask.py"
# The demo's corpus (c2s_jax/demo.py), with more training examples to pack.
DEMO_OVERRIDES = (
    "seq_len=256",
    "top_k=(20,40)",
    "cells_per_example=(3,5)",
    "examples={'train': 6000, 'validation': 100, 'test': 100}",
)
ROWS_PER_BATCH = 8
# The examples sit in memory: no read threads, so the timings are the packers' own.
UNBUFFERED = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def demo_corpus() -> Path:
    """The demo-shaped pbmc68k corpus, built once."""
    out = OUT / "corpus"
    if not (out / "corpus.json").exists():
        from c2s_jax.config_loading import load_config
        from c2s_jax.corpus.config import corpus_spec
        from c2s_jax.corpus.records import build_corpus

        build_corpus(corpus_spec(load_config(DEMO_CORPUS, list(DEMO_OVERRIDES))), out)
    return out


def read_examples(corpus: Path) -> list[dict]:
    """Every training example as the loader hands it to packing: tokens [L] int32,
    loss_mask [L] int32, task_id."""
    from c2s_jax.corpus.records import data_source

    source = data_source(corpus, "train")
    return [
        {
            "tokens": np.asarray(source[i]["tokens"], np.int32),
            "loss_mask": np.asarray(source[i]["loss_mask"], np.int32),
            "task_id": np.int32(0),
        }
        for i in range(len(source))
    ]


def ours(examples: list[dict], seq_len: int, window: int) -> tuple[int, int, dict]:
    """(rows, positions holding tokens, final state) of train/packing.py."""
    from c2s_jax.train.packing import PackedBatchDataset

    parent = grain.MapDataset.source(examples).to_iter_dataset(UNBUFFERED)
    batches = iter(PackedBatchDataset(parent, ROWS_PER_BATCH, seq_len, window, seed=0))
    rows = filled = 0
    for batch in batches:
        used = batch["segment_ids"] > 0
        rows += int(used.any(axis=1).sum())
        filled += int(used.sum())
    return rows, filled, batches.get_state()


def grain_packer(
    examples: list[dict], seq_len: int, bins: int, best_fit: bool
) -> tuple[int, int, dict]:
    """(rows, positions holding tokens, final state) of grain's packer with `bins` bins,
    on the same inputs shifted as ours shifts them (tokens without the last, targets and
    mask without the first: L - 1 positions)."""

    def shifted(example: dict) -> dict:
        tokens = example["tokens"][-(seq_len + 1) :]
        mask = example["loss_mask"][-(seq_len + 1) :]
        return {"tokens": tokens[:-1], "targets": tokens[1:], "loss_mask": mask[1:]}

    packer = (
        grain_experimental.BestFitPackIterDataset
        if best_fit
        else grain_experimental.FirstFitPackIterDataset
    )
    parent = grain.MapDataset.source(examples).map(shifted).to_iter_dataset(UNBUFFERED)
    lengths = {"tokens": seq_len, "targets": seq_len, "loss_mask": seq_len}
    rows_ds = iter(packer(parent, length_struct=lengths, num_packing_bins=bins, seed=0))
    rows = filled = 0
    for row in rows_ds:
        rows += 1
        filled += int((row["tokens_segment_ids"] > 0).sum())
    return rows, filled, rows_ds.get_state()


def measure(name: str, run, n_examples: int, seq_len: int, repeats: int) -> dict:
    """Rows, fill and median packing speed of one packer over `repeats` passes."""
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        rows, filled, state = run()
        seconds.append(time.perf_counter() - began)
    median = statistics.median(seconds)
    return {
        "packer": name,
        "rows": rows,
        "fill": filled / (rows * seq_len),
        "examples_per_s": n_examples / median,
        "state_bytes": len(json.dumps(state, default=str)),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--window", type=int, default=4096, help="ours: examples per window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    corpus = args.corpus or demo_corpus()
    examples = read_examples(corpus)
    lengths = np.array([len(e["tokens"]) - 1 for e in examples])
    bound = int(np.ceil(np.minimum(lengths, args.seq_len).sum() / args.seq_len))
    n, s = len(examples), args.seq_len
    runs = [
        measure(
            f"ours, window {args.window}",
            lambda: ours(examples, s, args.window),
            n,
            s,
            args.repeats,
        ),
        measure(
            f"grain FirstFit, {ROWS_PER_BATCH} bins",
            lambda: grain_packer(examples, s, ROWS_PER_BATCH, best_fit=False),
            n,
            s,
            args.repeats,
        ),
        measure(
            f"grain BestFit, {ROWS_PER_BATCH} bins",
            lambda: grain_packer(examples, s, ROWS_PER_BATCH, best_fit=True),
            n,
            s,
            args.repeats,
        ),
        measure(
            "grain BestFit, 256 bins",
            lambda: grain_packer(examples, s, 256, best_fit=True),
            n,
            s,
            args.repeats,
        ),
    ]
    reference = runs[0]
    lines = [
        "| packer | rows | rows vs ours | fill | examples/s | state (bytes) |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['packer']} | {r['rows']} | {r['rows'] / reference['rows']:.3f} | "
            f"{r['fill']:.3f} | {r['examples_per_s']:,.0f} | {r['state_bytes']} |"
        )
    table = "\n".join(lines)
    print(table)
    command = "`.venv/bin/python bench/bench_packing.py" + (
        f" --corpus {args.corpus}`" if args.corpus else "`"
    )
    body = (
        "## Packing examples into rows: ours against grain's packers\n\n"
        f"{command}: the {n:,} training examples of "
        f"{'the demo-shaped pbmc68k corpus' if args.corpus is None else args.corpus} "
        f"({lengths.mean():.0f} tokens on average, {lengths.max()} at most) packed into rows "
        f"of {s} positions, in the same order; fewer rows is less compute for the same "
        f"examples (a perfect packing needs at least {bound} rows). examples/s: median of "
        f"{args.repeats} passes on one core.\n\n"
        f"{table}\n\n_Recorded {time.strftime('%Y-%m-%d')} on {machine()}._\n"
    )
    if not args.no_record:
        update_section("packing", body)


if __name__ == "__main__":
    main()
