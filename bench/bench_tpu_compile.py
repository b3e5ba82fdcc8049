"""Every real-size experiment compiled for its TPU slice: the TPU compiler's report.

For each file in configs/scaling/, in a fresh process: `c2s plan --compile --json` (the
trainer's own step over abstract arrays, compiled by libtpu for `config.target.slice` on
this CPU machine), with that process's wall time and peak resident memory, and XLA's
cost-model step time extrapolated in depth (`--cost-model`, a second process).

    .venv/bin/python bench/bench_tpu_compile.py [--config configs/scaling/gemma2_2b.py ...]

Each row is also printed as one JSON line.

Only one process may hold libtpu at a time, so the configs compile one after another.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import update_section

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs" / "scaling").glob("*.py"))
C2S = [sys.executable, "-m", "c2s_jax"]


def run(argv: list[str]) -> tuple[dict, float, float]:
    """(last stdout line as JSON, wall seconds, peak RSS GiB) of one fresh process."""
    began = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    if process.returncode not in (0, 1):  # 1: compiled, but does not fit
        raise RuntimeError(f"{' '.join(argv)} failed with status {process.returncode}")
    return json.loads(out.strip().splitlines()[-1]), seconds, usage.ru_maxrss / 2**20


def measure(path: Path) -> dict:
    """The compiled plan of one config and the cost of compiling it."""
    argv = [*C2S, "plan", "--config", str(path), "--compile", "--json"]
    plan, seconds, rss_gib = run(argv)
    # The cost-model extrapolation compiles two more (small) programs: timed apart.
    plan["cost_model_seconds"] = run([*argv, "--cost-model"])[0]["cost_model_seconds"]
    return {"name": path.stem, **plan, "wall_seconds": seconds, "peak_rss_gib": rss_gib}


def table(rows: list[dict]) -> list[str]:
    from c2s_jax.accelerators import GENERATIONS
    from c2s_jax.train.flops import peak_flops

    kinds = {g.prefix: g.device_kind for g in GENERATIONS.values()}
    lines = [
        "| config | slice | mesh (data x fsdp x tensor) | arguments | temporaries "
        "| total / HBM (GiB) | compiled / model FLOPs | all-gather / reduce-scatter / "
        "all-reduce / all-to-all per step | compile (s) | peak RSS (GiB) "
        "| cost-model step (s), implied MFU |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        c = r["collectives_per_step"]
        cost = "n/a (not positive)"
        if r["cost_model_seconds"]:
            kind = kinds[r["topology"].split("-")[0].split(" x ")[-1]]
            mfu = r["model_flops_per_step"] / (
                r["devices"] * peak_flops(kind) * r["cost_model_seconds"]
            )
            cost = f"{r['cost_model_seconds']:.2f}, {mfu:.0%}"
        lines.append(
            f"| {r['name']} | {r['topology']} | {' x '.join(map(str, r['mesh'].values()))} "
            f"| {r['argument_gib']:.2f} | {r['temp_gib']:.2f} "
            f"| {r['total_gib']:.2f} / {r['hbm_gib']:g} ({r['total_gib'] / r['hbm_gib']:.0%}) "
            f"| {r['compiled_flops_per_step'] / r['model_flops_per_step']:.3f} "
            f"| {c['all-gather']} / {c['reduce-scatter']} / {c['all-reduce']} / "
            f"{c['all-to-all']} | {r['wall_seconds']:.0f} | {r['peak_rss_gib']:.1f} | {cost} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="*", type=Path, default=CONFIGS)
    args = parser.parse_args()
    rows = []
    for path in args.config:
        rows.append(measure(path))
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        "## Real-size configs compiled for their TPU slices (configs/scaling)",
        "",
        "Command: `.venv/bin/python bench/bench_tpu_compile.py` (each row: `c2s plan --config "
        "FILE --compile --json` in a fresh process, libtpu 0.0.42, no TPU attached).",
        "",
        *table(rows),
        "",
        "Memory per chip is the TPU compiler's own `memory_analysis()` of the trainer's step "
        "(arguments: parameters, AdamW moments, step and batch shards; outputs alias the "
        "donated state; temporaries: activations, gradients and everything else the step "
        "holds at its peak); total = arguments + outputs - aliased + temporaries. FLOPs: dot "
        "and convolution FLOPs of the optimized program per chip times chips, every loop body "
        "times its trip count, plus the splash kernels' own (the blocks their masks compute), "
        "against the model FLOPs of "
        "`c2s_jax.train.flops` (3 x forward, no rematerialization; full remat adds one "
        "forward, 1.33x). Collectives: executions per step. Compile: wall seconds and peak "
        "resident memory of the whole `c2s plan --compile` process on this machine. "
        "Cost-model step: XLA's `optimal_seconds`, a model of the chip, not a measurement, and "
        "not positive on v5e; XLA counts a loop body once, so it is extrapolated from unrolled "
        "2- and 4-layer compiles of one microbatch (`c2s plan --compile --cost-model`); its "
        "implied MFU = model FLOPs / (chips x bf16 peak x that time).",
    ]
    print("\n".join(table(rows)))
    update_section("tpu_compile", "\n".join(lines))


if __name__ == "__main__":
    main()
