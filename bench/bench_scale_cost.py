"""What one point of the real-size scaling ladder costs: FLOPs, memory, hours.

For each experiment in configs/scaling/: training FLOPs per step (c2s_jax.train.flops,
model FLOPs: remat's recomputation not counted) on the slice the file names, and the hours
to train the file's token budget, at an assumed MFU on that slice and at the MFU our train
step reaches on this machine's CPU. (Memory per chip on each slice is the TPU compiler's,
from bench/bench_tpu_compile.py.)

The CPU MFU is measured, not assumed: the trainer's jitted step (AdamW, scanned layers,
full remat, as in the ladder; float32, since CPUs lack fast bfloat16 matmuls) on Pythia-70M
at its real shape, against this CPU's peak, estimated as the best float32 matmul throughput
of jax over a few square sizes, in the same process just before and after the steps (so
that both see the same load on a shared machine). Each process is fresh; the table quotes
medians over them.

    .venv/bin/python bench/bench_scale_cost.py --repeats 3 --steps 3
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model_speed import timed_steps
from report import median_seconds, run_worker, update_section

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs" / "scaling").glob("*.py"))
ASSUMED_MFU = 0.40
# The CPU measurement: a released size with a short sequence, so one step takes seconds.
CPU_MODEL, CPU_BATCH, CPU_SEQ = "pythia_70m", 4, 256
MATMUL_SIZES = (1024, 2048, 3072)
MATMUL_REPEATS = 5


def matmul_peak() -> float:
    """Best median FLOP/s of float32 square matmuls over MATMUL_SIZES."""
    import jax
    import jax.numpy as jnp

    best = 0.0
    for n in MATMUL_SIZES:
        x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        matmul = jax.jit(lambda a, b: a @ b)
        matmul(x, x).block_until_ready()
        seconds, _ = median_seconds(
            lambda x=x, matmul=matmul: matmul(x, x).block_until_ready(), MATMUL_REPEATS
        )
        best = max(best, 2 * n**3 / seconds)
    return best


def worker(steps: int) -> dict:
    """The trainer's step on CPU_MODEL (median seconds, FLOPs) and the CPU's peak.

    The peak is measured just before and just after the steps, and the better of the two
    kept, so that the step and the peak it is divided by see the same load.
    """
    import jax

    from c2s_jax import parallel
    from c2s_jax.train.data import DataSpec, batch_sources, to_global
    from c2s_jax.train.default_config import default_config
    from c2s_jax.train.flops import train_flops_per_token
    from c2s_jax.train.optimizer import optimizer_for
    from c2s_jax.train.state import ModelSpec, create_train_state
    from c2s_jax.train.step import LossConfig, make_train_step

    cfg = default_config()
    cfg.model.name = CPU_MODEL
    cfg.model.overrides = {"dtype": "float32", "remat": "full", "scan_layers": True}
    cfg.data.batch_size, cfg.data.seq_len = CPU_BATCH, CPU_SEQ
    mesh = parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    rules = tuple(tuple(r) for r in cfg.rules)
    batch_sharding = parallel.batch_sharding(mesh, rules)
    tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps)
    state, parts, shardings = create_train_state(ModelSpec.from_config(cfg), tx, mesh)
    source, _, tasks = batch_sources(
        DataSpec.from_config(cfg), parts.config.vocab_size, batch_sharding
    )
    step_fn = make_train_step(
        parts,
        tx,
        schedule,
        LossConfig(len(tasks), cfg.train.z_loss_weight),
        shardings,
        batch_sharding,
        rules,
    )
    batch = to_global(next(source), batch_sharding)
    holder = {"state": state}
    peak_before = matmul_peak()

    def step():
        holder["state"], metrics = step_fn(holder["state"], batch, None)
        jax.block_until_ready(metrics["loss"])

    began = time.perf_counter()
    step()  # compile
    compile_s = time.perf_counter() - began
    result = timed_steps(step, steps, warmup=1)
    peak = max(peak_before, matmul_peak())
    flops = train_flops_per_token(parts.config, CPU_SEQ) * CPU_BATCH * CPU_SEQ
    return {
        **result,
        "compile_seconds": compile_s,
        "flops_per_step": flops,
        "peak_flops": peak,
        "mfu": flops / result["seconds"] / peak,
        "device": jax.devices()[0].device_kind,
    }


def ladder_row(path: Path) -> dict:
    """FLOPs and parameters of one configs/scaling experiment on its slice."""
    import jax
    from flax import nnx

    from c2s_jax.config_loading import load_config
    from c2s_jax.models.registry import abstract_model
    from c2s_jax.train.flops import peak_flops, train_flops_per_token
    from c2s_jax.train.state import ModelSpec

    cfg = load_config(path)
    model_cfg = ModelSpec.from_config(cfg).model_config()
    target = cfg.target
    params = nnx.state(abstract_model(model_cfg), nnx.Param)
    embedding = sum(
        leaf.size
        for k in ("embed", "unembed")
        if k in params
        for leaf in jax.tree.leaves(params[k])
    )
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    return {
        "model": cfg.model.name,
        "n_params": n_params,
        "non_embedding": n_params - embedding,
        "slice": target.slice,
        "chip": target.chip,
        "chips": target.devices,
        "chip_peak": peak_flops(target.chip),
        "tokens_per_step": tokens_per_step,
        "flops_per_step": train_flops_per_token(model_cfg, cfg.data.seq_len) * tokens_per_step,
        "steps": cfg.train.steps,
    }


def hours(row: dict, mfu: float) -> float:
    """Wall hours of the row's run: its FLOPs over the slice's peak times `mfu`."""
    return row["steps"] * row["flops_per_step"] / (row["chips"] * row["chip_peak"] * mfu) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--steps", type=int, default=3, help="timed train steps per process")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps)))
        return
    runs = [run_worker(__file__, "cpu", "--steps", str(args.steps)) for _ in range(args.repeats)]
    peak = statistics.median(r["peak_flops"] for r in runs)
    step_s = statistics.median(r["seconds"] for r in runs)
    cpu_mfu = statistics.median(r["mfu"] for r in runs)
    flops_per_step = runs[0]["flops_per_step"]
    others = max(r["other_cores"] for r in runs)
    print(
        f"CPU peak {peak / 1e9:.1f} GFLOP/s (float32 matmul); {CPU_MODEL} step "
        f"{step_s:.2f} s = {flops_per_step / step_s / 1e9:.1f} GFLOP/s -> MFU {cpu_mfu:.1%}",
        flush=True,
    )
    rows = [ladder_row(p) for p in CONFIGS]
    rows.sort(key=lambda r: r["n_params"])
    table = [
        "| model | parameters (non-embedding) | slice (chips) "
        "| tokens per step | FLOPs per step | tokens per point | hours at "
        f"{ASSUMED_MFU:.0%} MFU | hours at {cpu_mfu:.1%} MFU |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['model']} | {r['n_params'] / 1e9:.2f}B ({r['non_embedding'] / 1e9:.2f}B) "
            f"| {r['slice']} ({r['chips']}) "
            f"| {r['tokens_per_step'] / 1e6:.2f}M | {r['flops_per_step']:.3g} "
            f"| {r['steps'] * r['tokens_per_step'] / 1e9:.1f}B "
            f"| {hours(r, ASSUMED_MFU):,.1f} | {hours(r, cpu_mfu):,.1f} |"
        )
        print(table[-1], flush=True)
    chip_peaks = {r["chip"]: r["chip_peak"] for r in rows}
    peaks_text = ", ".join(f"{p / 1e12:.0f} TFLOP/s ({chip})" for chip, p in chip_peaks.items())
    lines = [
        "## Cost of a real-size scaling point (configs/scaling)",
        "",
        f"Command: `.venv/bin/python bench/bench_scale_cost.py --repeats {args.repeats} "
        f"--steps {args.steps}`.",
        "",
        *table,
        "",
        "Assumptions, column by column. Parameters: all of the model's, and in brackets "
        "without the embedding and unembedding. Slice and chips: as named in each file's "
        "`config.target` (v5e-N has N chips; v5p-N has N/2, its name counting TensorCores); "
        "memory per chip on it: the TPU compiler's report in the section above. FLOPs per "
        "step: model FLOPs of forward and backward (3x forward, attention over "
        "the full window, sliding windows on Gemma-2's even layers; remat's recomputation not "
        "counted), batch x length tokens. Tokens per point: the file's steps, 20 tokens per "
        "parameter (Hoffmann et al. 2022). Hours = steps x FLOPs per step / (chips x peak x "
        f"MFU) with bfloat16 peaks per chip of {peaks_text} (c2s_jax.train.flops); the "
        f"{ASSUMED_MFU:.0%} MFU is an assumption, not a measurement; the last column applies "
        "the MFU measured here on the CPU, as if the TPU step reached the same fraction of "
        "its peak. No evaluation, checkpointing, input stalls or restarts are counted.",
        "",
        f"Measured here: peak {peak / 1e9:.1f} GFLOP/s = the best median float32 matmul "
        f"throughput of jax over square sizes {', '.join(map(str, MATMUL_SIZES))} "
        f"({runs[0]['device']}), measured just before and after the steps in the same process "
        "(the better of the two kept); the trainer's step (AdamW, scanned layers, full remat, "
        f"float32) on {CPU_MODEL} with batch {CPU_BATCH} x {CPU_SEQ} took {step_s:.2f} s "
        f"(compile {statistics.median(r['compile_seconds'] for r in runs):.0f} s) for "
        f"{flops_per_step / 1e9:.0f} GFLOP = {flops_per_step / step_s / 1e9:.1f} GFLOP/s, "
        f"MFU {cpu_mfu:.1%} (each process's own step / peak ratio). Medians over "
        f"{args.repeats} fresh processes of {args.steps} steps each; other processes kept up "
        f"to {others:.2f} of the machine's cores busy during the timed steps.",
    ]
    update_section("scale_cost", "\n".join(lines))


if __name__ == "__main__":
    main()
