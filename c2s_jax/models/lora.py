"""Low-rank adapters (LoRA) for the weight matrices of a model, kept outside it.

For a target weight W viewed as [*in, *out], the adapted weight is
W + (alpha / rank) * A @ B with A [*in, rank] and B [rank, *out]; B starts at zero, so a
fresh adapter changes nothing. Stacked layer weights get one adapter per layer.

Training: differentiate ``loss(with_lora(model, lora))`` with respect to ``lora`` only,
passing both as arguments (``nnx.value_and_grad(loss_fn, argnums=1)(model, lora)``); the
base model is never written. Serving/export: :func:`merge` folds the adapters
into the base weights in place, :func:`unmerge` takes them out again (up to float
rounding).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from c2s_jax.models.registry import Model

# Number of input axes of each adaptable weight (after the ``layers`` axis, if stacked).
INPUT_AXES = {
    "wq": 1,
    "wk": 1,
    "wv": 1,
    "wo": 2,
    "w_gate": 1,
    "w_up": 1,
    "w_down": 1,
    "w_in": 1,
    "w_out": 1,
}


def _key(path: tuple) -> str:
    return ".".join(map(str, path))


class LoRA(nnx.Module):
    """Adapters A, B for every parameter of ``model`` whose name is in ``targets``."""

    def __init__(
        self,
        model: Model,
        *,
        rank: int,
        alpha: float,
        targets: tuple[str, ...] = ("wq", "wv"),
        rngs: nnx.Rngs,
    ):
        unknown = set(targets) - set(INPUT_AXES)
        if unknown:
            raise ValueError(f"cannot adapt {sorted(unknown)}; adaptable: {sorted(INPUT_AXES)}")
        self.scale = alpha / rank
        # Per adapted parameter: how many leading (layer) axes A and B share with it.
        self.lead_axes = {}
        a, b = {}, {}
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            if path[-1] not in targets:
                continue
            w, axes = var.get_value(), var.get_metadata()["out_sharding"]
            split = (path[0] == "layers") + INPUT_AXES[path[-1]]
            lead = split - INPUT_AXES[path[-1]]
            fan_in = math.prod(w.shape[lead:split])
            a_shape = (*w.shape[:split], rank)
            b_shape = (*w.shape[:lead], rank, *w.shape[split:])
            init_a = nnx.initializers.normal(fan_in**-0.5)
            a[_key(path)] = nnx.LoRAParam(
                init_a(rngs.params(), a_shape, w.dtype),
                out_sharding=(*axes[:split], None),
                eager_sharding=False,
            )
            b[_key(path)] = nnx.LoRAParam(
                jnp.zeros(b_shape, w.dtype),
                out_sharding=(*axes[:lead], None, *axes[split:]),
                eager_sharding=False,
            )
            self.lead_axes[_key(path)] = lead
        if not a:
            raise ValueError(f"model has no parameters named {targets}")
        self.a = nnx.Dict(a)
        self.b = nnx.Dict(b)

    def delta(self, key: str) -> jax.Array:
        """(alpha / rank) * A @ B for the parameter at ``key``, in its shape."""
        a, b = self.a[key][...], self.b[key][...]
        lead = self.lead_axes[key]
        # Flatten the input and output axes to matrices, batched over the layer axis.
        a_LIR = a.reshape(*a.shape[:lead], -1, a.shape[-1])
        b_LRO = b.reshape(*b.shape[: lead + 1], -1)
        w = jnp.matmul(a_LIR, b_LRO) * self.scale
        return w.reshape(*a.shape[:-1], *b.shape[lead + 1 :])


def _adapted_state(model: Model, lora: LoRA, sign: float) -> nnx.State:
    state = nnx.state(model, nnx.Param)
    flat = []
    for path, var in nnx.to_flat_state(state):
        key = _key(path)
        if key in lora.lead_axes:
            var = var.replace(var.get_value() + sign * lora.delta(key).astype(var.dtype))
        flat.append((path, var))
    return nnx.from_flat_state(flat)


def with_lora(model: Model, lora: LoRA) -> Model:
    """A copy of ``model`` whose target weights include the adapters (``model`` unchanged);
    differentiable with respect to ``lora``."""
    graphdef, _ = nnx.split(model)
    return nnx.merge(graphdef, _adapted_state(model, lora, 1.0))
