"""Training tokens/s on one GPU: our jitted train step against transformers + torch AdamW.

For each model shape (a registry name: by default `pythia_160m` and `gemma2_2b`) both sides
run full training steps (forward, backward, gradient clipping and an AdamW update) with
bfloat16 parameters and compute (`--param-dtype float32` gives both sides float32
parameters with bfloat16 compute, as configs/scaling/* train) on the same batch of random
token ids (seed 0, every position a target; default 4 x 1024 tokens, `--batch`/`--seq-len`,
or per shape as `NAME:BxT`, e.g. `--shapes pythia_160m:8x1024 gemma2_2b`). 4 x 1024 leaves
Gemma-2 2B room on one H200 (139 GiB) for both sides without remat: at 8 x 1024 XLA's CPU
compile of our step asks for 134 GiB of temporaries besides 15-20 GiB of state (4 x 1024:
75 GiB); our process may take 90% of the GPU (XLA_PYTHON_CLIENT_MEM_FRACTION).

- ours: the trainer's own pieces, `c2s_jax.train.state.create_train_state` (random init
  straight onto a 1-device data x fsdp x tensor mesh), `c2s_jax.train.optimizer.
  optimizer_for` (clip by global norm 1.0 -> AdamW with the decay mask and schedule) and
  `c2s_jax.train.step.make_train_step` (jit, explicit shardings, donated state, masked
  loss over chunked logits), with the layers scanned and no remat unless asked. Attention
  is the XLA "dot" path (scores materialised; splash is TPU-only).
- peer: transformers' `GPTNeoXForCausalLM` / `Gemma2ForCausalLM` built with
  `AutoModelForCausalLM.from_config` from the config our converter writes for the same
  shape (`c2s_jax.checkpoints.hf_*.config_to_hf`; random init, no download), eager
  PyTorch, the loss transformers' ForCausalLMLoss computes (logits upcast to float32,
  cross-entropy), `torch.nn.utils.clip_grad_norm_(1.0)` and `torch.optim.AdamW`
  (fused on CUDA; no decay on biases and norm scales). Attention: SDPA for GPT-NeoX,
  eager for Gemma-2 (SDPA would drop Gemma-2's attention logit softcap; transformers
  itself asks for eager to train Gemma-2); `--hf-attention` overrides.

The JSON records AdamW's moment dtypes before and after the timed steps: a state whose
dtypes drift would compile the step again.

Each (shape, side) runs in a fresh process (JAX preallocates most of the GPU, and neither
framework should inherit the other's allocator or threads). A process compiles/warms up,
then times `--steps` steps one by one, synchronised after each (`jax.block_until_ready`
on the new state and metrics; `torch.cuda.synchronize`), and reports the median step, the
tokens/s it implies and MFU (`c2s_jax.train.flops`: FLOPs per token and the device's dense
bf16 peak). The table gives ours / transformers in tokens/s per shape; `--out` gets every
figure as JSON. Nothing is written to BENCHMARKS.md. `--budget` seconds bound the whole run:
a side that starts late times fewer steps (at least 3), one that cannot start is skipped.

    python3 bench/bench_gpu_train_step.py --out $OUT/gpu_train_step.json  # one H200, ~3-5 min
    JAX_PLATFORMS=cpu .venv/bin/python bench/bench_gpu_train_step.py --tiny  # CPU smoke test

`--tiny` shrinks every shape (2 layers, d_model 64, vocabulary 512, batch 2 x 64) so the
whole script runs on a CPU in about a minute.

Modules outside the GPU machine's usual stack that importing our trainer pulls in:
`ml_collections` (train.state/optimizer/default_config) and `grain` (train.step ->
train.packing, for BATCH_KEYS only; grain needs array_record, cloudpickle, portpicker).
Where grain cannot be imported, a stub with the two base classes train.packing subclasses
stands in (the step never touches grain) and the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SHAPES = ("pythia_160m", "gemma2_2b")
SIDES = ("ours", "peer")
# --tiny: every shape shrunk per family (a window of 32 keeps Gemma-2's sliding layers
# distinct from its global ones at 64 tokens).
TINY = {
    "gemma2": dict(
        d_model=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        mlp_dim=128,
        query_pre_attn_scalar=16,
        vocab_size=512,
        sliding_window=32,
    ),
    "pythia": dict(d_model=64, num_layers=2, num_heads=4, mlp_dim=256, vocab_size=512),
}
# Both sides: AdamW betas, eps, weight decay and clipping as c2s_jax.train.default_config,
# the learning rate of configs/scaling/* (ours warms up over 1 step, then stays).
LEARNING_RATE = 3e-4
B1, B2, EPS, WEIGHT_DECAY, CLIP_NORM = 0.9, 0.95, 1e-8, 0.1, 1.0
MIN_TIMED_STEPS = 3


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- shared


def family_of(shape: str) -> str:
    return "gemma2" if shape.startswith("gemma2") else "pythia"


def model_config(spec: dict):
    """The registry config of `spec["shape"]` with the run's dtype, remat, scan and --tiny
    overrides."""
    from c2s_jax.models.registry import get_config

    return get_config(spec["shape"], **model_overrides(spec))


def model_overrides(spec: dict) -> dict:
    overrides = dict(
        dtype=spec["dtype"],
        param_dtype=spec["param_dtype"],
        remat=spec["remat"],
        scan_layers=spec["scan_layers"],
    )
    if spec["tiny"]:
        overrides.update(TINY[family_of(spec["shape"])])
    return overrides


def token_rows(spec: dict, vocab_size: int):
    """[B, T + 1] int32 random token ids (seeded): rows' first T are the inputs, last T
    the targets."""
    import numpy as np

    rng = np.random.default_rng(spec["seed"])
    return rng.integers(0, vocab_size, (spec["batch"], spec["seq_len"] + 1), dtype=np.int32)


def timed_steps(step, sync, spec: dict) -> dict:
    """Runs `step` (returns the loss, unsynchronised) once (compile / first touch), then
    `spec["warmup"]` times, then up to `spec["steps"]` timed steps, each synchronised by
    `sync`; stops early (after at least MIN_TIMED_STEPS) when the next step would pass
    `spec["deadline"]`."""
    began = time.perf_counter()
    loss = step()
    sync()
    first = time.perf_counter() - began
    log(f"  first step (compile + run) {first:.1f} s, loss {float(loss):.4f}")
    first_loss = float(loss)
    warmup = []
    for _ in range(spec["warmup"]):
        start = time.perf_counter()
        step()
        sync()
        warmup.append(time.perf_counter() - start)
    if warmup:
        log(f"  warm-up steps {', '.join(f'{t:.2f}' for t in warmup)} s")
    times = []
    for i in range(spec["steps"]):
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
        left = spec["deadline"] - time.time()
        if i + 1 >= MIN_TIMED_STEPS and left < 1.5 * max(times) + 5:
            log(f"  time budget: stopping after {i + 1} of {spec['steps']} timed steps")
            break
    median = statistics.median(times)
    return {
        "first_step_s": first,
        "warmup_step_times_s": warmup,
        "median_step_s": median,
        "min_step_s": min(times),
        "mean_step_s": statistics.fmean(times),
        "step_times_s": times,
        "timed_steps": len(times),
        "loss_first": first_loss,
        "loss_last": float(loss),
    }


def add_rates(result: dict, spec: dict, cfg, device_kind: str) -> None:
    """tokens/s and MFU of the median step, from c2s_jax.train.flops."""
    from c2s_jax.train import flops

    tokens = spec["batch"] * spec["seq_len"]
    per_token = flops.train_flops_per_token(cfg, spec["seq_len"])
    peak = flops.peak_flops(device_kind, spec["peak_flops"])
    result["tokens_per_step"] = tokens
    result["tokens_per_s"] = tokens / result["median_step_s"]
    result["train_flops_per_token"] = per_token
    result["peak_flops"] = peak
    result["mfu"] = per_token * result["tokens_per_s"] / peak if peak else None


# ----------------------------------------------------------------------------- ours


def _import_grain_or_stub() -> str:
    """'grain X.Y' or, where grain does not import, a note that a stub stands in.

    c2s_jax.train.step imports c2s_jax.train.packing for BATCH_KEYS, and packing imports
    grain at module level to subclass grain.IterDataset and grain.DatasetIterator; the
    train step itself never uses grain.
    """
    try:
        import grain

        return f"grain {getattr(grain, '__version__', '?')}"
    except ImportError as err:
        import types

        stub = types.ModuleType("grain")
        stub.IterDataset = type("IterDataset", (), {})
        stub.DatasetIterator = type("DatasetIterator", (), {})
        sys.modules["grain"] = stub
        log(f"  note: grain does not import ({err}); a stub stands in (the step never uses it)")
        return f"stub (import failed: {err})"


def worker_ours(spec: dict) -> dict:
    log(f"ours: {spec['shape']}: importing jax and c2s_jax")
    import jax
    import numpy as np

    grain_note = _import_grain_or_stub()
    from c2s_jax import parallel
    from c2s_jax.train.data import to_global
    from c2s_jax.train.default_config import default_config
    from c2s_jax.train.optimizer import optimizer_for
    from c2s_jax.train.state import ModelSpec, create_train_state
    from c2s_jax.train.step import LossConfig, make_train_step

    device = jax.devices()[0]
    log(f"ours: jax {jax.__version__} on {device.platform} ({device.device_kind})")
    cfg = default_config()
    cfg.seed = spec["seed"]
    cfg.model.name = spec["shape"]
    cfg.model.overrides = model_overrides(spec)
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 1, 1
    cfg.optimizer.learning_rate = LEARNING_RATE
    cfg.optimizer.warmup_steps = 1
    cfg.optimizer.decay = "constant"
    cfg.optimizer.b1, cfg.optimizer.b2, cfg.optimizer.eps = B1, B2, EPS
    cfg.optimizer.weight_decay, cfg.optimizer.clip_norm = WEIGHT_DECAY, CLIP_NORM
    rules = tuple(tuple(r) for r in cfg.rules)
    mesh = parallel.make_mesh(dict(cfg.mesh), devices=jax.devices()[:1])
    total_steps = 1 + spec["warmup"] + spec["steps"]
    tx, schedule = optimizer_for(cfg.optimizer, total_steps)

    began = time.perf_counter()
    state, parts, shardings = create_train_state(ModelSpec.from_config(cfg), tx, mesh)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - began
    model_cfg = parts.config
    n_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
    log(f"ours: {n_params:,} parameters initialised in {init_s:.1f} s")

    batch_sharding = parallel.batch_sharding(mesh, rules)
    step_fn = make_train_step(
        parts, tx, schedule, LossConfig(1, 0.0, 1), shardings, batch_sharding, rules
    )
    rows = token_rows(spec, model_cfg.vocab_size)
    B, T = spec["batch"], spec["seq_len"]
    host = {
        "tokens": rows[:, :-1],
        "targets": rows[:, 1:],
        "loss_mask": np.ones((B, T)),
        "segment_ids": np.ones((B, T)),
        "positions": np.broadcast_to(np.arange(T), (B, T)),
        "task_id": np.zeros((B, T)),
    }
    batch = to_global({k: np.asarray(v, np.int32) for k, v in host.items()}, batch_sharding)
    holder = {"state": state, "metrics": None}
    initial_dtypes = _moment_dtypes(state.opt_state)
    del state

    def step():
        holder["state"], holder["metrics"] = step_fn(holder["state"], batch, parts.frozen)
        return holder["metrics"]["loss"]

    def sync():
        jax.block_until_ready((holder["state"], holder["metrics"]))

    result = timed_steps(step, sync, spec)
    # A state whose dtypes drift (a promoted moment) would compile the step again.
    moment_dtypes = {"initial": initial_dtypes, "after": _moment_dtypes(holder["state"].opt_state)}
    if moment_dtypes["initial"] != moment_dtypes["after"]:
        log(
            f"  note: AdamW moment dtypes {moment_dtypes['initial']} -> {moment_dtypes['after']} "
            "after the first step (the second step compiled again)"
        )
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    add_rates(result, spec, model_cfg, device.device_kind)
    result.update(
        family=family_of(spec["shape"]),
        n_params=n_params,
        init_s=init_s,
        peak_memory_gib=peak / 2**30 if peak else None,
        attention="XLA dot (scores materialised)",
        device_kind=device.device_kind,
        platform=device.platform,
        versions=_versions("jax", "jaxlib", "flax", "optax", "ml_collections"),
        grain=grain_note,
        adamw_moment_dtypes=moment_dtypes,
        model_config={k: _plain(v) for k, v in vars(model_cfg).items()},
    )
    return result


# ----------------------------------------------------------------------------- peer


def worker_peer(spec: dict) -> dict:
    log(f"peer: {spec['shape']}: importing torch and transformers")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_gemma2, hf_pythia = _config_converters()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    device_kind = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    log(f"peer: torch {torch.__version__} on {device} ({device_kind})")
    cfg = model_config(spec)
    family = family_of(spec["shape"])
    converter = hf_gemma2 if family == "gemma2" else hf_pythia
    fields = dict(converter.config_to_hf(cfg, spec["param_dtype"]))
    fields.pop("architectures", None)
    hf_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    attention = spec["hf_attention"]
    if attention == "auto":
        attention = "eager" if family == "gemma2" else "sdpa"
    param_dtype = getattr(torch, spec["param_dtype"])
    compute_dtype = getattr(torch, spec["dtype"])

    torch.manual_seed(spec["seed"])
    began = time.perf_counter()
    with device:
        try:
            model = AutoModelForCausalLM.from_config(
                hf_config, dtype=param_dtype, attn_implementation=attention
            )
        except TypeError:  # transformers < 4.56 names it torch_dtype
            model = AutoModelForCausalLM.from_config(
                hf_config, torch_dtype=param_dtype, attn_implementation=attention
            )
    model.to(device).train()
    if spec["remat"] != "none":
        model.gradient_checkpointing_enable()
    if cuda:
        torch.cuda.synchronize()
    init_s = time.perf_counter() - began
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    log(
        f"peer: {type(model).__name__}, {n_params:,} parameters, attention {attention}, "
        f"built in {init_s:.1f} s"
    )
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=LEARNING_RATE, betas=(B1, B2), eps=EPS, fused=cuda or None
    )
    rows = torch.as_tensor(token_rows(spec, cfg.vocab_size), dtype=torch.long, device=device)
    inputs, targets = rows[:, :-1], rows[:, 1:].reshape(-1)
    # Mixed precision only when the parameters are not already in the compute dtype.
    autocast = param_dtype != compute_dtype
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=compute_dtype, enabled=autocast):
            logits = model(input_ids=inputs, use_cache=False).logits
        # As transformers' ForCausalLMLoss: float32 logits, mean cross-entropy.
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        optimizer.step()
        return loss.detach()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    result = timed_steps(step, sync, spec)
    add_rates(result, spec, cfg, device_kind)
    import transformers

    result.update(
        family=family,
        n_params=n_params,
        init_s=init_s,
        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        attention=attention,
        model_class=type(model).__name__,
        optimizer=f"torch.optim.AdamW(fused={bool(cuda)})",
        autocast=autocast,
        device_kind=device_kind,
        platform=device.type,
        versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )
    return result


def _config_converters():
    """(hf_gemma2, hf_pythia): our config -> transformers config.json mappings.

    The checkpoints package's __init__ also imports loading and export (orbax, safetensors;
    jax stays on the CPU by JAX_PLATFORMS); should any of that fail to import, the two
    mapping modules, which need none of it, are imported without the package __init__.
    """
    try:
        from c2s_jax.checkpoints import hf_gemma2, hf_pythia
    except ImportError as err:
        import types

        log(f"  note: c2s_jax.checkpoints does not import ({err}); loading its config maps only")
        for name in [m for m in sys.modules if m.startswith("c2s_jax.checkpoints")]:
            del sys.modules[name]
        package = types.ModuleType("c2s_jax.checkpoints")
        package.__path__ = [str(ROOT / "c2s_jax" / "checkpoints")]
        sys.modules["c2s_jax.checkpoints"] = package
        from c2s_jax.checkpoints import hf_gemma2, hf_pythia
    return hf_gemma2, hf_pythia


def _moment_dtypes(opt_state) -> list[str]:
    """Dtypes of the optimizer state's arrays (AdamW's moments; counters left out)."""
    import jax

    return sorted({str(x.dtype) for x in jax.tree.leaves(opt_state) if x.ndim > 0})


def _versions(*names: str) -> dict:
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                out[name] = None
    return out


def _plain(value):
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


# ----------------------------------------------------------------------------- parent


def run_side(side: str, spec: dict, deadline: float) -> dict:
    """Runs one side for one shape in a fresh interpreter; its result, or an error."""
    left = deadline - time.time()
    if left < 30:
        log(f"{spec['shape']} {side}: skipped, {left:.0f} s of the budget left")
        return {"error": "skipped: time budget spent"}
    env = dict(os.environ)
    if side == "peer":
        env["JAX_PLATFORMS"] = "cpu"  # jax is imported for our configs only: off the GPU
    else:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.90")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            __file__,
            "--worker",
            side,
            json.dumps({**spec, "deadline": deadline}),
            str(out),
        ]
        began = time.perf_counter()
        try:
            process = subprocess.run(argv, env=env, timeout=left + 20, check=False)
        except subprocess.TimeoutExpired:
            log(f"{spec['shape']} {side}: killed at the end of the time budget")
            return {"error": "timed out (time budget)", "wall_s": time.perf_counter() - began}
        wall = time.perf_counter() - began
        result = json.loads(out.read_text()) if out.exists() else {}
        if process.returncode != 0 or "error" in result or not result:
            log(f"{spec['shape']} {side}: failed with status {process.returncode}")
            error = result.get("error") or f"worker exited with status {process.returncode}"
            return {"error": error, "wall_s": wall}
    result["wall_s"] = wall
    return result


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    """One line per shape: each side's median step, tokens/s, MFU and peak memory, and the
    ratio of tokens/s; a side that was not measured says why below the table."""
    header = [
        "shape",
        "params",
        "B x T",
        "ours ms",
        "ours tok/s",
        "ours MFU",
        "ours GiB",
        "peer ms",
        "peer tok/s",
        "peer MFU",
        "peer GiB",
        "peer attn",
        "ours/peer",
    ]
    lines, notes = [header], []
    for row in rows:
        params = row["ours"].get("n_params") or row["peer"].get("n_params")
        cells = [
            row["shape"],
            _fmt(params and params / 1e6, ",.4g") + ("M" if params else ""),
            f"{row['batch']} x {row['seq_len']}",
        ]
        for side in SIDES:
            r = row[side]
            if "error" in r:
                cells += ["n/a", "-", "-", "-"] + (["-"] if side == "peer" else [])
                notes.append(f"{row['shape']} {side}: {r['error'][:300]}")
                continue
            mfu = r.get("mfu")
            cells += [
                f"{1e3 * r['median_step_s']:.1f}",
                f"{r['tokens_per_s']:,.0f}",
                _fmt(mfu and 100 * mfu, ".1f") + ("%" if mfu else ""),
                _fmt(r.get("peak_memory_gib"), ".1f"),
            ]
            if side == "peer":
                cells.append(r["attention"])
        ratio = row["ratio_tokens_per_s"]
        cells.append(_fmt(ratio, ".2f") + ("x" if ratio else ""))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text + notes)


def parse_shape(entry: str, batch: int, seq_len: int) -> tuple[str, int, int]:
    """'NAME' or 'NAME:BxT' -> (NAME, B, T), B and T defaulting to the run's."""
    name, _, size = entry.partition(":")
    if size:
        try:
            batch, seq_len = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--shapes {entry!r}: expected NAME or NAME:BxT") from None
    return name, batch, seq_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=list(DEFAULT_SHAPES),
        help="registry names (c2s_jax/models/registry.py), each optionally NAME:BxT",
    )
    parser.add_argument("--steps", type=int, help="timed steps per side (default 10; --tiny 3)")
    parser.add_argument(
        "--warmup", type=int, help="untimed steps after the first (default 2; --tiny 1)"
    )
    parser.add_argument("--batch", type=int, help="rows per step (default 4; --tiny 2)")
    parser.add_argument("--seq-len", type=int, help="tokens per row (default 1024; --tiny 64)")
    parser.add_argument(
        "--param-dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="parameters and AdamW moments, both sides (float32: the torch "
        "side autocasts to --dtype)",
    )
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="compute dtype, both sides",
    )
    parser.add_argument(
        "--remat",
        default="none",
        choices=("none", "full", "dots"),
        help="ours: remat policy; peer: gradient checkpointing unless none",
    )
    parser.add_argument(
        "--unroll",
        action="store_true",
        help="ours: unrolled layers (default: scanned, as the trainer's configs)",
    )
    parser.add_argument(
        "--hf-attention",
        default="auto",
        choices=("auto", "eager", "sdpa"),
        help="peer attention (auto: sdpa for GPT-NeoX, eager for Gemma-2)",
    )
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peak-flops",
        type=float,
        help="peak FLOP/s per device for MFU (default: c2s_jax.train.flops' table by device kind)",
    )
    parser.add_argument(
        "--budget", type=float, default=330.0, help="seconds for the whole run, compiles included"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="shrink every shape (2 layers, d_model 64, vocab 512, 2 x 64)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "gpu_train_step.json"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        side, spec, out = args.worker
        try:
            result = (worker_ours if side == "ours" else worker_peer)(json.loads(spec))
        except Exception as err:  # recorded (an out-of-memory error, say), then raised
            Path(out).write_text(json.dumps({"error": f"{type(err).__name__}: {err}"[:2000]}))
            raise
        Path(out).write_text(json.dumps(result))
        return

    began = time.time()
    deadline = began + args.budget

    def pick(value, full, tiny):
        return value if value is not None else (tiny if args.tiny else full)

    spec = dict(
        steps=pick(args.steps, 10, 3),
        warmup=pick(args.warmup, 2, 1),
        batch=pick(args.batch, 4, 2),
        seq_len=pick(args.seq_len, 1024, 64),
        param_dtype=args.param_dtype,
        dtype=args.dtype,
        remat=args.remat,
        scan_layers=not args.unroll,
        hf_attention=args.hf_attention,
        seed=args.seed,
        peak_flops=args.peak_flops,
        tiny=args.tiny,
    )
    log(f"settings: {json.dumps(spec)}; shapes {args.shapes}; budget {args.budget:.0f} s")
    rows = []
    for entry in args.shapes:
        shape, batch, seq_len = parse_shape(entry, spec["batch"], spec["seq_len"])
        row = {"shape": shape, "batch": batch, "seq_len": seq_len}
        for side in SIDES:
            if side not in args.sides:
                row[side] = {"error": "not run (--sides)"}
                continue
            log(f"== {shape}: {side}")
            row[side] = run_side(
                side, {**spec, "shape": shape, "batch": batch, "seq_len": seq_len}, deadline
            )
            if "tokens_per_s" in row[side]:
                r = row[side]
                log(
                    f"== {shape} {side}: {1e3 * r['median_step_s']:.1f} ms/step, "
                    f"{r['tokens_per_s']:,.0f} tokens/s, MFU {_fmt(r['mfu'], '.1%')}"
                )
        ours, peer = row["ours"].get("tokens_per_s"), row["peer"].get("tokens_per_s")
        row["ratio_tokens_per_s"] = ours / peer if ours and peer else None
        rows.append(row)

    text = table(rows)
    print(
        "\nTraining step (forward + backward + AdamW), one device, "
        f"{spec['param_dtype']} params, {spec['dtype']} compute, remat {spec['remat']}, "
        f"ours {'unrolled' if args.unroll else 'scanned'} layers; ms = median step; "
        "ours/peer = tokens/s ratio",
        flush=True,
    )
    print(text, flush=True)
    report = {
        "bench": "bench_gpu_train_step",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {**spec, "shapes": args.shapes, "budget_s": args.budget},
        "host": {
            "python": platform.python_version(),
            "machine": platform.node(),
            "xla_flags": os.environ.get("XLA_FLAGS"),
        },
        "wall_s": time.time() - began,
        "shapes": rows,
        "table": text,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    log(f"wrote {out} ({report['wall_s']:.0f} s in all)")
    failed = [f"{r['shape']} {s}" for r in rows for s in args.sides if "error" in r[s]]
    if failed:
        log(f"not measured: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
