"""The TPU compiler's own account of a step on a slice that is not attached.

The trainer's (or GRPO's, or the sampler's) own jitted step is built over abstract state
and batch, sharded for a TPU topology's devices (:func:`c2s_jax.parallel.topology_devices`),
and compiled by the TPU compiler (libtpu) on this machine. What it reports is what the slice
would run: per-device memory (arguments, outputs, aliased, temporaries), matmul FLOPs with
every loop body counted once per iteration (:mod:`c2s_jax.plan.hlo_stats`), and the
collectives. This is what `c2s plan --compile` prints.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from c2s_jax import parallel
from c2s_jax.accelerators import parse_accelerator
from c2s_jax.plan.hlo_stats import COLLECTIVES, ProgramStats, program_stats
from c2s_jax.train.flops import train_flops_per_token

GIB = 2**30
# A step fits when the compiler's total leaves this share of HBM to the runtime.
FIT_FRACTION = 0.95
STEPS = ("train", "grpo", "decode")


@dataclasses.dataclass(frozen=True)
class CompiledPlan:
    """One compiled step on one slice. Memory is per device, in GiB; FLOPs per step over
    all devices.

    Attributes:
      step: 'train', 'grpo' or 'decode'.
      topology: the slice (e.g. 'v5p-128 (v5p:4x4x4)'), times the slice count.
      devices: chips the step runs on.
      mesh: {mesh axis: size}.
      hbm_gib: HBM of one chip.
      argument_gib, output_gib, alias_gib, temp_gib: the compiler's memory analysis
        (aliased: outputs that reuse donated arguments' buffers).
      resident_gib: arrays held beside the step that it does not take (GRPO: the frozen
        copy of the starting policy for the KL penalty, and the sampler's copy of the
        weights in the decoding layout).
      compiled_flops_per_step: matmul FLOPs of the compiled program, loop bodies times their
        trip counts, summed over devices; Pallas kernels (splash attention) count the FLOPs
        of the blocks their masks compute.
      kernel_flops_per_step: the kernels' part of compiled_flops_per_step.
      model_flops_per_step: what the model needs (c2s_jax.train.flops); see `flops_note`.
      xla_flops_per_device: XLA's cost analysis as reported (loop bodies counted once).
      collectives: collective instructions of each kind in the program.
      collectives_per_step: executions of each kind in one step (loops multiplied out).
      collectives_in_loops: instructions of each kind inside loop bodies (for decoding: what
        every generated token runs).
      loop_trip_counts: every loop's trip count (None: read as 1, not known statically).
      cost_model_seconds: XLA's cost-model step time, an estimate, not a measurement. XLA
        counts a loop body once, so for a program with loops it is extrapolated in depth
        from unrolled 2- and 4-layer compiles of one microbatch (train steps, on request);
        None where that was not done or the model's figure is not positive (v5e, several
        slices).
      compile_seconds: wall time of lowering and compiling here.
      flops_note: how each FLOP figure was counted.
      compiled: False when the compiler refused the program because its temporaries alone
        exceed HBM; then only the memory figures are known (outputs not included).
    """

    step: str
    topology: str
    devices: int
    mesh: dict
    hbm_gib: float
    argument_gib: float
    output_gib: float
    alias_gib: float
    temp_gib: float
    resident_gib: float
    compiled_flops_per_step: float
    kernel_flops_per_step: float
    model_flops_per_step: float
    xla_flops_per_device: float
    collectives: dict
    collectives_per_step: dict
    collectives_in_loops: dict
    loop_trip_counts: list
    cost_model_seconds: float | None
    compile_seconds: float
    flops_note: str
    compiled: bool = True

    @property
    def total_gib(self) -> float:
        """Per-device peak: arguments + outputs - aliased + temporaries + resident."""
        return (
            self.argument_gib + self.output_gib - self.alias_gib + self.temp_gib + self.resident_gib
        )

    @property
    def fits(self) -> bool:
        """The total leaves at least (1 - FIT_FRACTION) of HBM free."""
        return self.total_gib <= FIT_FRACTION * self.hbm_gib

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every figure, `total_gib` and `fits` included."""
        return {**dataclasses.asdict(self), "total_gib": self.total_gib, "fits": self.fits}

    def table(self) -> str:
        """A printable report."""
        rows = [
            ("arguments", self.argument_gib),
            ("outputs", self.output_gib),
            ("aliased (donated)", -self.alias_gib),
            ("temporaries", self.temp_gib),
        ]
        if self.resident_gib:
            rows.append(("held beside the step", self.resident_gib))
        rows.append(("total", self.total_gib))
        share = self.total_gib / self.hbm_gib
        lines = [
            f"{self.step} step compiled for {self.topology}: {self.devices} chips, mesh "
            f"{self.mesh}, {self.compile_seconds:.0f} s to compile",
            f"memory per chip (TPU compiler), of {self.hbm_gib:g} GiB HBM:",
            *(f"  {name:22s} {value:10.3f} GiB" for name, value in rows),
            f"  {'fits' if self.fits else 'DOES NOT FIT'} ({share:.0%} of HBM; the limit is "
            f"{FIT_FRACTION:.0%})",
        ]
        if not self.compiled:
            lines.append(self.flops_note)
            return "\n".join(lines)
        lines += [
            f"FLOPs per step: compiled {self.compiled_flops_per_step:.4g}, model "
            f"{self.model_flops_per_step:.4g} (ratio "
            f"{self.compiled_flops_per_step / max(self.model_flops_per_step, 1):.3f})",
            f"  {self.flops_note}",
            "collectives (in the program / per step / inside loops): "
            + ", ".join(
                f"{k} {self.collectives[k]}/{self.collectives_per_step[k]}/"
                f"{self.collectives_in_loops[k]}"
                for k in self.collectives
            ),
        ]
        if self.cost_model_seconds is not None:
            lines.append(
                f"XLA cost-model step time (an estimate, not a measurement): "
                f"{self.cost_model_seconds:.3g} s"
            )
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Program:
    """A step lowered for a mesh, not yet compiled.

    Attributes:
      lowered: the lowered step.
      arguments: its abstract, sharded arguments (their bytes stand in for the compiler's
        figure when it refuses to compile).
      model_flops: what the model needs per step.
      resident_bytes: per-device bytes held beside the step (see CompiledPlan).
    """

    lowered: Any
    arguments: Any
    model_flops: float
    resident_bytes: float = 0


def topology_mesh(
    cfg: ml_collections.ConfigDict, topology: str, slices: int
) -> tuple[jax.sharding.Mesh, float, str]:
    """(mesh of `cfg` over the topology's devices, HBM GiB per chip, the slice's name)."""
    accelerator = parse_accelerator(topology, "--topology")
    devices = parallel.topology_devices(topology, slices)
    mesh = parallel.make_mesh(dict(cfg.mesh), slices, devices)
    name = f"{accelerator.type} ({accelerator.topology})"
    if slices > 1:
        name = f"{slices} x {name}"
    return mesh, accelerator.generation.hbm_gib, name


def lower_train_step(cfg: ml_collections.ConfigDict, mesh) -> Program:
    """The train step of `cfg` on `mesh`: the trainer's own state, optimizer and step over
    abstract arrays."""
    from c2s_jax.train.optimizer import optimizer_for
    from c2s_jax.train.packing import BATCH_KEYS
    from c2s_jax.train.settings_check import check_train_settings
    from c2s_jax.train.state import ModelSpec, create_train_state
    from c2s_jax.train.step import LossConfig, make_train_step

    rules = tuple(tuple(r) for r in cfg.rules)
    check_train_settings(cfg, parallel.batch_shards(mesh, rules))
    batch_sharding = parallel.batch_sharding(mesh, rules)
    tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps)
    state, parts, shardings = create_train_state(
        ModelSpec.from_config(cfg), tx, mesh, abstract=True
    )
    loss_cfg = LossConfig(cfg.data.num_tasks, cfg.train.z_loss_weight, cfg.train.microbatches)
    step = make_train_step(parts, tx, schedule, loss_cfg, shardings, batch_sharding, rules)
    rows, length = cfg.data.batch_size, cfg.data.seq_len
    batch = {
        key: jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=batch_sharding)
        for key in BATCH_KEYS
    }
    model_flops = train_flops_per_token(parts.config, length) * rows * length
    arguments = (state, batch, parts.frozen)
    return Program(step.lower(*arguments), arguments, model_flops)


def lower_grpo_step(cfg: ml_collections.ConfigDict, mesh, model_cfg, prompt_tokens: int) -> Program:
    """The GRPO update of `cfg` for a model of `model_cfg` on `mesh`, over rows of
    `prompt_tokens` prompt tokens plus `config.sampling.max_new_tokens`, as GRPO pads them;
    a full-parameter policy's frozen reference copy and the sampler's weights are held
    beside it."""
    from c2s_jax.inference.sampler import PROMPT_BUCKET
    from c2s_jax.models.parts import param_shardings, with_shardings
    from c2s_jax.rl.grpo import settings_from_config
    from c2s_jax.rl.step import ROW_KEYS, batch_shardings, make_update_step
    from c2s_jax.train.optimizer import optimizer_for
    from c2s_jax.train.state import abstract_train_state, state_shardings

    rules = tuple(tuple(r) for r in cfg.rules)
    settings = settings_from_config(cfg)
    parts, params = _abstract_policy(cfg, mesh, rules, model_cfg)
    tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps * settings.iterations)
    shardings = state_shardings(params, tx, mesh, rules)
    state = abstract_train_state(params, tx, shardings)
    rows_sharding = batch_shardings(mesh, rules)
    update = make_update_step(
        parts, tx, schedule, settings.objective, shardings, rows_sharding, rules
    )
    rows = cfg.grpo.prompts_per_step * settings.group_size
    length = prompt_tokens + settings.sampling.max_new_tokens - 1
    length = -(-length // PROMPT_BUCKET) * PROMPT_BUCKET
    dtypes = {"completion_mask": jnp.float32}
    batch = {
        key: jax.ShapeDtypeStruct(
            (rows, length), dtypes.get(key, jnp.int32), sharding=rows_sharding[key]
        )
        for key in ROW_KEYS
    }
    batch["advantages"] = jax.ShapeDtypeStruct(
        (rows,), jnp.float32, sharding=rows_sharding["advantages"]
    )
    reference = None
    if settings.objective.beta > 0:
        reference = jax.ShapeDtypeStruct(
            (rows, length), jnp.float32, sharding=rows_sharding["tokens"]
        )
    arguments = (state, batch, parts.frozen, None, reference)
    # A full-parameter policy keeps a frozen copy of its starting weights for the KL term,
    # and the sampler keeps the weights (adapters and base) in the decoding layout.
    resident = per_device_bytes(params) if settings.objective.beta > 0 and not cfg.lora.rank else 0
    decoding = parallel.decode_rules(rules)
    for tree in (params, parts.frozen):
        if tree is not None:
            resident += per_device_bytes(
                with_shardings(tree, param_shardings(tree, mesh, decoding))
            )
    model_flops = train_flops_per_token(model_cfg, length) * rows * length
    return Program(update.lower(*arguments), arguments, model_flops, resident)


def lower_decode(
    parts, params, mesh, rules, rows: int, prompt_tokens: int, new_tokens: int
) -> Program:
    """The sampler's program for `rows` prompts of `prompt_tokens` tokens and up to
    `new_tokens` new ones; its model FLOPs are those of the prefill and one decoding step
    (the loop's trip count depends on when the rows end)."""
    from c2s_jax.inference.sampler import Sampler, SamplingParams

    sampler = Sampler(parts, params, eos_id=1, frozen=parts.frozen, mesh=mesh, rules=rules)
    lowered = sampler.lower(rows, prompt_tokens, SamplingParams(new_tokens))
    forward_per_token = train_flops_per_token(parts.config, prompt_tokens + new_tokens) / 3
    return Program(lowered, (params, parts.frozen), forward_per_token * rows * (prompt_tokens + 1))


def per_device_bytes(tree) -> int:
    """Bytes the most loaded device holds of a tree of sharded ShapeDtypeStructs."""
    return sum(
        math.prod(leaf.sharding.shard_shape(leaf.shape)) * jnp.dtype(leaf.dtype).itemsize
        for leaf in jax.tree.leaves(tree)
    )


def extrapolated_cost_seconds(cfg: ml_collections.ConfigDict, mesh) -> float | None:
    """XLA's cost-model time of one train step of `cfg`, which scans its layers and
    microbatches (XLA's model counts a loop body once).

    The same step is compiled for one microbatch with 2 and with 4 unrolled layers of the
    full width; their difference is the cost of a pair of layers (Gemma-2 alternates
    sliding and global ones), so a step costs microbatches x (t2 + (L / 2 - 1) (t4 - t2)).
    The optimizer update is counted once per microbatch: a slight overestimate. None when
    the cost model gives no positive time.
    """
    from c2s_jax.train.state import ModelSpec, base_model

    layers = base_model(ModelSpec.from_config(cfg), mesh, abstract=True)[2].num_layers
    seconds = {}
    for depth in (2, 4):
        small = ml_collections.ConfigDict(cfg.to_dict())
        small.model.overrides = {**cfg.model.overrides, "num_layers": depth, "scan_layers": False}
        small.data.batch_size = cfg.data.batch_size // cfg.train.microbatches
        small.train.microbatches = 1
        compiled = lower_train_step(small, mesh).lowered.compile()
        seconds[depth] = _cost(compiled).get("optimal_seconds", 0.0)
    if min(seconds.values()) <= 0:
        return None
    pair = seconds[4] - seconds[2]
    return cfg.train.microbatches * (seconds[2] + (layers / 2 - 1) * pair)


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    return cost[0] if isinstance(cost, list) else cost


def describe(
    compiled,
    *,
    step: str,
    topology: str,
    mesh,
    hbm_gib: float,
    model_flops: float,
    compile_seconds: float,
    resident_bytes: float = 0,
    cost_model_seconds: float | None = None,
) -> CompiledPlan:
    """The :class:`CompiledPlan` of a compiled step; `cost_model_seconds` replaces XLA's
    own figure for a program with loops (see :func:`extrapolated_cost_seconds`)."""
    memory = compiled.memory_analysis()
    cost = _cost(compiled)
    stats: ProgramStats = program_stats(compiled.as_text())
    devices = mesh.devices.size
    unknown = [name for name, trips in stats.loops if trips is None]
    note = (
        "compiled: dot/convolution FLOPs of the optimized program per chip x chips, loop "
        "bodies x trip counts"
        + (f" ({len(unknown)} loop(s) of unknown trip count counted once)" if unknown else "")
        + (
            f", plus {stats.kernel_flops * devices:.4g} of Pallas kernels (the blocks their "
            "masks compute; XLA does not see inside them)"
            if stats.kernel_flops
            else ""
        )
        + "; model: matmul FLOPs of the architecture (c2s_jax.train.flops), no rematerialization"
    )
    if any(trips != 1 for _, trips in stats.loops):
        seconds = cost_model_seconds
    else:
        seconds = cost.get("optimal_seconds")
    return CompiledPlan(
        step=step,
        topology=topology,
        devices=int(devices),
        mesh={k: int(v) for k, v in mesh.shape.items()},
        hbm_gib=float(hbm_gib),
        argument_gib=memory.argument_size_in_bytes / GIB,
        output_gib=memory.output_size_in_bytes / GIB,
        alias_gib=memory.alias_size_in_bytes / GIB,
        temp_gib=memory.temp_size_in_bytes / GIB,
        resident_gib=resident_bytes / GIB,
        compiled_flops_per_step=stats.matmul_flops * devices,
        kernel_flops_per_step=stats.kernel_flops * devices,
        model_flops_per_step=float(model_flops),
        xla_flops_per_device=float(cost.get("flops", 0.0)),
        collectives=stats.collectives,
        collectives_per_step=stats.collectives_per_run,
        collectives_in_loops=stats.collectives_in_loops,
        loop_trip_counts=[trips for _, trips in stats.loops],
        cost_model_seconds=float(seconds) if seconds and seconds > 0 else None,
        compile_seconds=compile_seconds,
        flops_note=note,
    )


def plan_compiled(
    cfg: ml_collections.ConfigDict,
    *,
    topology: str,
    slices: int = 1,
    step: str = "train",
    model_cfg=None,
    prompt_tokens: int = 256,
    new_tokens: int = 256,
    rows: int | None = None,
    cost_model: bool = False,
) -> CompiledPlan:
    """Compiles `step` of `cfg` for `slices` x `topology` and reports it.

    Args:
      cfg: a training config ('train', 'decode') or a GRPO config ('grpo', 'decode').
      topology: an accelerator type ('v5p-128') or a topology ('v5p:4x4x4').
      slices: slices joined over the data-center network (the mesh's data axis spans
        them, as `config.dcn_data` does in training).
      step: 'train', 'grpo' (the policy update) or 'decode' (the sampler).
      model_cfg: the model of a GRPO config (its bundle's); training configs name theirs.
      prompt_tokens, new_tokens, rows: the decode (and GRPO) shape; rows defaults to the
        config's batch (GRPO: prompts per step x group size).
      cost_model: for a train step, also extrapolate XLA's cost-model step time
        (:func:`extrapolated_cost_seconds`: two more compiles of a few layers).
    """
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, not {step!r}")
    mesh, hbm_gib, name = topology_mesh(cfg, topology, slices)
    rules = tuple(tuple(r) for r in cfg.rules)
    began = time.perf_counter()
    if step == "train":
        program = lower_train_step(cfg, mesh)
    elif step == "grpo":
        program = lower_grpo_step(cfg, mesh, model_cfg, prompt_tokens)
    else:
        parts, params = _abstract_policy(cfg, mesh, rules, model_cfg)
        if rows is None:
            grpo = cfg.get("grpo")
            rows = (
                cfg.data.batch_size
                if grpo is None
                else grpo.prompts_per_step * cfg.sampling.group_size
            )
        program = lower_decode(parts, params, mesh, rules, rows, prompt_tokens, new_tokens)
    common = dict(
        step=step,
        topology=name,
        mesh=mesh,
        hbm_gib=hbm_gib,
        model_flops=program.model_flops,
        resident_bytes=program.resident_bytes,
    )
    try:
        compiled = program.lowered.compile()
    except jax.errors.JaxRuntimeError as err:
        temporaries = refused_temporaries(str(err))
        if temporaries is None:
            raise
        return refused(
            per_device_bytes(program.arguments),
            temporaries,
            compile_seconds=time.perf_counter() - began,
            **common,
        )
    seconds = time.perf_counter() - began
    cost_seconds = None
    if cost_model and step == "train":
        cost_seconds = extrapolated_cost_seconds(cfg, mesh)
    return describe(compiled, compile_seconds=seconds, cost_model_seconds=cost_seconds, **common)


_REFUSAL = re.compile(
    r"HLO temporaries \(([\d.]+)([KMGTP]?)\) exceeds available HBM \(([\d.]+)([KMGTP]?)\)"
)


def refused_temporaries(message: str) -> float | None:
    """Bytes of temporaries in the TPU compiler's refusal to compile a program whose
    temporaries alone exceed HBM ("Ran out of memory on HBM ..."), or None for any other
    error."""
    match = _REFUSAL.search(message)
    if match is None:
        return None
    return float(match.group(1)) * 1024 ** "_KMGTP".index(match.group(2) or "_")


def refused(
    argument_bytes: float,
    temporary_bytes: float,
    *,
    step: str,
    topology: str,
    mesh,
    hbm_gib: float,
    model_flops: float,
    compile_seconds: float,
    resident_bytes: float = 0,
) -> CompiledPlan:
    """The plan of a step the compiler refused: its temporaries from the compiler's message,
    its arguments' per-device bytes from their shardings; no program, so no FLOPs or
    collectives."""
    return CompiledPlan(
        step=step,
        topology=topology,
        devices=int(mesh.devices.size),
        mesh={k: int(v) for k, v in mesh.shape.items()},
        hbm_gib=float(hbm_gib),
        argument_gib=argument_bytes / GIB,
        output_gib=0.0,
        alias_gib=0.0,
        temp_gib=temporary_bytes / GIB,
        resident_gib=resident_bytes / GIB,
        compiled_flops_per_step=0.0,
        kernel_flops_per_step=0.0,
        model_flops_per_step=float(model_flops),
        xla_flops_per_device=0.0,
        collectives={k: 0 for k in COLLECTIVES},
        collectives_per_step={k: 0 for k in COLLECTIVES},
        collectives_in_loops={k: 0 for k in COLLECTIVES},
        loop_trip_counts=[],
        cost_model_seconds=None,
        compile_seconds=compile_seconds,
        flops_note="not compiled: the TPU compiler stopped because the temporaries alone "
        "exceed the chip's HBM (the figure is its own); FLOPs and collectives are unknown",
        compiled=False,
    )


def _abstract_policy(cfg, mesh, rules, model_cfg):
    """(parts, params) of the model a config samples from, as sharded abstract arrays."""
    from flax import nnx

    from c2s_jax.models.parts import param_shardings, with_shardings
    from c2s_jax.models.registry import abstract_model
    from c2s_jax.train.state import LoraSpec, ModelSpec, base_model, trainable_parts

    # A GRPO config names its model by a bundle (model_cfg given) and has no config.model.
    if model_cfg is None:
        graphdef, base, model_cfg = base_model(ModelSpec.from_config(cfg), mesh, abstract=True)
    else:
        graphdef, shapes = nnx.split(abstract_model(model_cfg), nnx.Param)
        base = with_shardings(shapes, param_shardings(shapes, mesh, rules))
    lora = LoraSpec.from_config(cfg.lora)
    return trainable_parts(graphdef, base, model_cfg, lora, cfg.seed, mesh, rules)
