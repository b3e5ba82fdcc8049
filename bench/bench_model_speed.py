"""Training-step speed of our models (jit) against transformers on PyTorch (eager).

For each family and (batch, length), both sides run forward + backward of the mean
next-token cross-entropy on the same random weights (the transformers model is saved and
loaded through our converter) in float32 on the CPU. Every measurement runs in a fresh
process, ours and transformers alternating, so neither inherits the other's threads
(XLA's CPU workers keep spinning for a while after each computation). A process reports the
median of ``--steps`` timed steps after warm-up and compilation; the table gives the median
over ``--repeats`` processes, and how many CPU cores other processes kept busy meanwhile.

    python bench/bench_model_speed.py --repeats 3          # prints and records BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import run_worker, update_section

SHAPES = ((1, 64), (4, 256), (8, 512))
FAMILIES = ("gemma2", "pythia")
# A small member of each family: d_model 256, 4 layers, 4 heads (Gemma-2: 2 key/value heads,
# a 128-token window on alternate layers), vocabulary 8192.
SMALL = dict(
    vocab_size=8192,
    hidden_size=256,
    intermediate_size=1024,
    num_hidden_layers=4,
    num_attention_heads=4,
)
GEMMA2_EXTRA = dict(
    num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64, sliding_window=128
)


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have spent busy since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_steps(step, steps: int, warmup: int = 2) -> dict:
    """Median step time, and the cores that other processes used while it was measured."""
    for _ in range(warmup):
        step()
    times = []
    began, busy, own = time.perf_counter(), busy_seconds(), own_cpu_seconds()
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    wall = time.perf_counter() - began
    others = (busy_seconds() - busy - (own_cpu_seconds() - own)) / wall
    return {"seconds": statistics.median(times), "other_cores": max(others, 0.0)}


def hf_model(family: str):
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    if family == "gemma2":
        cfg = Gemma2Config(**SMALL, **GEMMA2_EXTRA, attn_implementation="eager")
        return Gemma2ForCausalLM(cfg)
    return GPTNeoXForCausalLM(GPTNeoXConfig(**SMALL, attn_implementation="eager"))


def tokens(batch: int, seq: int):
    import numpy as np

    return np.random.default_rng(0).integers(0, SMALL["vocab_size"], (batch, seq + 1))


def worker_torch(family: str, ckpt_dir: str, steps: int) -> dict:
    """Saves the random transformers model to ``ckpt_dir`` and times its eager steps."""
    import torch

    model = hf_model(family).train()
    model.save_pretrained(ckpt_dir)
    results = {}
    for batch, seq in SHAPES:
        tokens_BT = torch.as_tensor(tokens(batch, seq))

        def step(tokens_BT=tokens_BT):
            model.zero_grad(set_to_none=True)
            logits = model(tokens_BT[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens_BT[:, 1:].reshape(-1)
            )
            loss.backward()

        results[f"{batch}x{seq}"] = timed_steps(step, steps)
    results["threads"] = torch.get_num_threads()
    return results


def worker_ours(family: str, ckpt_dir: str, steps: int, scan_layers: bool) -> dict:
    """Loads the saved checkpoint through our converter and times jitted steps."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from c2s_jax.checkpoints import load_hf

    model, _ = load_hf(ckpt_dir, compute_dtype="float32", scan_layers=scan_layers)
    graphdef, params = nnx.split(model)

    @jax.jit
    def loss_and_grads(params, tokens_BT):
        def loss_fn(params):
            logits_BTV = nnx.merge(graphdef, params)(tokens_BT[:, :-1])
            labels_BT = tokens_BT[:, 1:]
            return optax.softmax_cross_entropy_with_integer_labels(logits_BTV, labels_BT).mean()

        return jax.value_and_grad(loss_fn)(params)

    results = {}
    for batch, seq in SHAPES:
        tokens_BT = jnp.asarray(tokens(batch, seq))
        results[f"{batch}x{seq}"] = timed_steps(
            lambda tokens_BT=tokens_BT: jax.block_until_ready(loss_and_grads(params, tokens_BT)),
            steps,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per process")
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, family, ckpt_dir, scan = args.worker
        if side == "torch":
            result = worker_torch(family, ckpt_dir, args.steps)
        else:
            result = worker_ours(family, ckpt_dir, args.steps, scan == "scan")
        print(json.dumps(result))
        return

    load_before = os.getloadavg()[0]
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for family in FAMILIES:
                ckpt = str(Path(tmp) / family)
                steps = str(args.steps)
                sides = {
                    "torch": run_worker(__file__, "torch", family, ckpt, "-", "--steps", steps)
                }
                for scan in ("unrolled", "scan"):
                    sides[scan] = run_worker(__file__, "ours", family, ckpt, scan, "--steps", steps)
                for side, result in sides.items():
                    runs.setdefault((family, side), []).append(result)
                print(f"repeat {repeat + 1}/{args.repeats} {family} done", flush=True)

    rows = []
    for family in FAMILIES:
        for batch, seq in SHAPES:
            key = f"{batch}x{seq}"
            ms = {
                side: 1e3 * statistics.median(r[key]["seconds"] for r in runs[(family, side)])
                for side in ("torch", "unrolled", "scan")
            }
            others = [r[key]["other_cores"] for side in ms for r in runs[(family, side)]]
            rows.append((family, batch, seq, ms, statistics.median(others), max(others)))
    threads = runs[(FAMILIES[0], "torch")][0]["threads"]
    ratios = [ms["torch"] / ms["unrolled"] for _, _, _, ms, _, _ in rows]
    met = sum(ratio >= 1.5 for ratio in ratios)
    lines = [
        "## Model training step: ours (JAX jit) vs transformers (PyTorch eager)",
        "",
        f"Command: `.venv/bin/python bench/bench_model_speed.py --repeats {args.repeats} "
        f"--steps {args.steps}`. Forward + backward of the next-token cross-entropy, float32, "
        "same random weights on both sides (saved by transformers, loaded by our converter). "
        "Config: d_model 256, 4 layers, 4 heads (Gemma-2: 2 key/value heads, head_dim 64, "
        "window 128 on alternate layers), MLP 1024, vocabulary 8192. Each figure is the "
        f"median over {args.repeats} fresh processes of the median of {args.steps} steps; "
        "ours ran with the layers unrolled (`scan_layers=False`) and scanned (the default). "
        f"PyTorch used {threads} threads.",
        "",
        "| family | batch x length | transformers (ms) | ours unrolled (ms) | ours scanned (ms) "
        "| ours unrolled / transformers (tokens/s) | ours scanned / transformers | "
        "other load (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {family} | {batch} x {seq} | {ms['torch']:.1f} | {ms['unrolled']:.1f} | "
            f"{ms['scan']:.1f} | {ms['torch'] / ms['unrolled']:.2f}x | "
            f"{ms['torch'] / ms['scan']:.2f}x | {median_others:.2f} (max {max_others:.2f}) |"
            for family, batch, seq, ms, median_others, max_others in rows
        ),
        "",
        f"The goal of at least 1.5x the tokens/s of transformers is met in {met} of "
        f"{len(rows)} rows (ours unrolled; ratios from {min(ratios):.2f}x to "
        f"{max(ratios):.2f}x).",
        "",
        f"Other load: CPU cores (of {os.cpu_count()}) that other processes kept busy during "
        "the timed steps of that row, median and most over its processes; the 1-minute load "
        f"average before the run was {load_before:.2f}.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        update_section("bench_model_speed", "\n".join(lines))


if __name__ == "__main__":
    main()
