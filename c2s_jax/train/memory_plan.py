"""Per-device memory of a training config before anything is allocated.

Shapes come from `jax.eval_shape` of the model and optimizer, shardings from the mesh
rules; each array's bytes are divided by the number of devices its sharding splits it
over. Activations are estimated from the per-layer tensors a step keeps for backward.
"""

import dataclasses
import math
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec

from c2s_jax import parallel
from c2s_jax.models import build_model
from c2s_jax.train.optimizer import make_optimizer
from c2s_jax.train.state import model_config

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device (the most loaded device) of each part of a training step."""

    params: int
    grads: int
    optimizer: int
    activations: int
    n_params: int
    mesh: dict

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations

    def table(self) -> str:
        """A printable table in GiB."""
        rows = [
            ("parameters", self.params),
            ("gradients", self.grads),
            ("optimizer state", self.optimizer),
            ("activations (estimate)", self.activations),
            ("total", self.total),
        ]
        lines = [f"{self.n_params:,} parameters on mesh {self.mesh}; per device:"]
        lines += [f"  {name:24s} {value / GIB:10.3f} GiB" for name, value in rows]
        return "\n".join(lines)


def _shard_bytes(leaf, logical: PartitionSpec, rules, axis_sizes: Mapping[str, int]) -> int:
    spec = parallel.fitted_spec(
        parallel.logical_to_spec(tuple(logical), rules), leaf.shape, axis_sizes
    )
    shard = list(leaf.shape)
    for i, entry in enumerate(tuple(spec)):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        shard[i] //= math.prod(axis_sizes[n] for n in names)
    return math.prod(shard) * np.dtype(leaf.dtype).itemsize


def plan_memory(cfg: ml_collections.ConfigDict, axis_sizes: Mapping[str, int]) -> MemoryPlan:
    """Per-device memory of `cfg` on a mesh of `axis_sizes` ({data, fsdp, tensor}: size).

    No devices are needed: a plan for a v5p-128 pod runs on a laptop.
    """
    rules = tuple(tuple(r) for r in cfg.rules)
    model_cfg = model_config(cfg)
    abstract = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
    params = nnx.state(abstract, nnx.Param)
    logical = jax.tree.leaves(
        nnx.get_partition_spec(params), is_leaf=lambda x: isinstance(x, PartitionSpec)
    )
    param_bytes = sum(
        _shard_bytes(leaf, spec, rules, axis_sizes)
        for leaf, spec in zip(jax.tree.leaves(params), logical, strict=True)
    )
    opt_cfg = ml_collections.ConfigDict(cfg.optimizer.to_dict())
    opt_cfg.total_steps = cfg.train.steps
    opt_state = jax.eval_shape(make_optimizer(opt_cfg).init, params)
    # AdamW keeps two moments per parameter, sharded like the parameter itself.
    moments = sum(leaf.size for leaf in jax.tree.leaves(opt_state)) / max(
        sum(p.size for p in jax.tree.leaves(params)), 1
    )
    batch_devices = axis_sizes["data"] * axis_sizes["fsdp"]
    rows = max(cfg.data.batch_size // batch_devices // cfg.train.microbatches, 1)
    tokens = rows * cfg.data.seq_len
    d, f = model_cfg.d_model, model_cfg.mlp_dim
    heads = model_cfg.num_heads
    act_bytes = np.dtype(model_cfg.dtype).itemsize
    # Kept per layer without remat: residual stream and norms (~6 D), q/k/v/out (~4 D),
    # MLP hidden (~3 F), attention probabilities (heads x seq); remat keeps the input only.
    per_layer = tokens * (10 * d + 3 * f + heads * cfg.data.seq_len) * act_bytes
    if model_cfg.remat != "none":
        per_layer = tokens * d * act_bytes
    logits = tokens * model_cfg.vocab_size * 4 * 2  # float32 logits and their gradient
    activations = model_cfg.num_layers * per_layer + logits
    return MemoryPlan(
        params=int(param_bytes),
        grads=int(param_bytes),
        optimizer=int(param_bytes * moments),
        activations=int(activations),
        n_params=int(sum(p.size for p in jax.tree.leaves(params))),
        mesh=dict(axis_sizes),
    )
