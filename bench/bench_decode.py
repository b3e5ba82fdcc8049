"""Decoding speed of our sampler (one jitted prefill + while-loop over the KV cache)
against transformers ``generate`` (PyTorch, eager, KV cache) on the CPU.

Both sides load the same random weights (saved by transformers, read by our converter),
take the same prompts (batch x 32 tokens) and greedily write 64 new tokens per row with
no early stop. tokens/s counts generated tokens over the whole call, prefill included.
Every measurement runs in a fresh process, sides alternating; the table gives medians
over ``--repeats`` processes of the median of ``--calls`` timed calls each.

    python bench/bench_decode.py --repeats 3          # prints and records BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model_speed import hf_model
from report import run_worker, update_section

BATCHES = (8, 32)
PROMPT, NEW = 32, 64
FAMILIES = ("gemma2", "pythia")
VOCAB = 8192


def prompts(batch: int):
    import numpy as np

    return np.random.default_rng(batch).integers(3, VOCAB, (batch, PROMPT))


def timed(call, calls: int) -> float:
    call()  # warm-up: compilation (ours) and allocator (both)
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def worker_torch(family: str, ckpt_dir: str, calls: int) -> dict:
    import torch

    model = hf_model(family).eval()
    model.save_pretrained(ckpt_dir)
    results = {}
    for batch in BATCHES:
        ids = torch.as_tensor(prompts(batch))

        def call(ids=ids):
            with torch.no_grad():
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=NEW,
                    min_new_tokens=NEW,
                    do_sample=False,
                    pad_token_id=0,
                )
            assert out.shape == (ids.shape[0], PROMPT + NEW)

        results[str(batch)] = timed(call, calls)
    results["threads"] = torch.get_num_threads()
    return results


def worker_ours(family: str, ckpt_dir: str, calls: int) -> dict:
    import numpy as np
    from flax import nnx

    from c2s_jax.checkpoints import load_hf
    from c2s_jax.inference.sampler import Sampler, SamplingParams
    from c2s_jax.models.parts import ModelParts

    model, cfg = load_hf(ckpt_dir, compute_dtype="float32")
    graphdef, params = nnx.split(model)
    # An EOS id outside the vocabulary: every row writes all NEW tokens, as on the other side.
    sampler = Sampler(ModelParts(graphdef, cfg), params, eos_id=cfg.vocab_size)
    greedy = SamplingParams(max_new_tokens=NEW)
    results = {}
    for batch in BATCHES:
        rows = list(prompts(batch).astype(np.int32))

        def call(rows=rows):
            tokens, _, lengths = sampler.generate_tokens(rows, greedy)
            assert tokens.shape == (len(rows), NEW) and (lengths == NEW).all()

        results[str(batch)] = timed(call, calls)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per process")
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, family, ckpt_dir = args.worker
        worker = worker_torch if side == "torch" else worker_ours
        print(json.dumps(worker(family, ckpt_dir, args.calls)))
        return

    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for family in FAMILIES:
                ckpt = str(Path(tmp) / family)
                for side in ("torch", "ours"):
                    result = run_worker(__file__, side, family, ckpt, "--calls", str(args.calls))
                    runs.setdefault((family, side), []).append(result)
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    rows = []
    for family in FAMILIES:
        for batch in BATCHES:
            seconds = {
                side: statistics.median(r[str(batch)] for r in runs[(family, side)])
                for side in ("torch", "ours")
            }
            rows.append((family, batch, {s: batch * NEW / t for s, t in seconds.items()}))
    threads = runs[(FAMILIES[0], "torch")][0]["threads"]
    ratios = [tps["ours"] / tps["torch"] for _, _, tps in rows]
    lines = [
        "## Decoding: our sampler vs transformers generate (CPU)",
        "",
        f"Command: `.venv/bin/python bench/bench_decode.py --repeats {args.repeats} "
        f"--calls {args.calls}`. Greedy decoding of {NEW} new tokens after {PROMPT}-token "
        "prompts, no early stop, float32, same random weights on both sides. Config: "
        "d_model 256, 4 layers, 4 heads (Gemma-2: 2 key/value heads, head_dim 64, window "
        f"128 on alternate layers), MLP 1024, vocabulary {VOCAB}. transformers: eager "
        f"attention, KV cache, PyTorch with {threads} threads. Figures: generated tokens/s, "
        f"median over {args.repeats} fresh processes of the median of {args.calls} calls.",
        "",
        "| family | batch | transformers (tokens/s) | ours (tokens/s) | ours / transformers |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {family} | {batch} | {tps['torch']:,.0f} | {tps['ours']:,.0f} | "
            f"{tps['ours'] / tps['torch']:.2f}x |"
            for family, batch, tps in rows
        ),
        "",
        f"The goal of at least 3x is met in {sum(r >= 3 for r in ratios)} of {len(rows)} rows "
        f"(from {min(ratios):.2f}x to {max(ratios):.2f}x). Load average before the run: "
        f"{os.getloadavg()[0]:.2f}.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        update_section("decode", "\n".join(lines))


if __name__ == "__main__":
    main()
