"""HF safetensors checkpoint -> our model, placed tensor by tensor on its sharding.

The model is built abstractly (shapes only), the checkpoint is checked against the full
list of expected tensors before anything is read, and each tensor then goes straight from
its memory-mapped file to its devices. Host memory never holds more than one HF tensor,
so a 27B checkpoint loads on a host that could not hold it whole.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from c2s_jax import parallel
from c2s_jax.checkpoints import families
from c2s_jax.checkpoints.rules import TensorRule
from c2s_jax.checkpoints.safetensors_io import CONFIG_FILE, CheckpointReader
from c2s_jax.errors import InputError
from c2s_jax.models import registry


class CheckpointError(InputError):
    """The checkpoint does not match the architecture its config describes, or describes
    one this package does not implement."""


def expected_tensors(tensor_rules: list[TensorRule], num_layers: int) -> dict[str, tuple]:
    """HF tensor name -> shape for every tensor a checkpoint must hold."""
    expected = {}
    for rule in tensor_rules:
        for layer in range(num_layers) if rule.per_layer else [None]:
            expected[rule.hf_key(layer)] = rule.hf_shape
    return expected


def check_checkpoint(
    reader: CheckpointReader, expected: dict[str, tuple], ignored_suffixes: Sequence[str]
) -> None:
    """Raises :class:`CheckpointError` listing every missing, misshapen or unknown tensor."""
    present = set(reader.names())
    problems = []
    for name, shape in expected.items():
        if name not in present:
            problems.append(f"missing tensor {name} (expected shape {shape})")
        elif reader.shape(name) != shape:
            problems.append(f"tensor {name} has shape {reader.shape(name)}, expected {shape}")
    for name in sorted(present - set(expected)):
        if not name.endswith(tuple(ignored_suffixes)):
            problems.append(f"unexpected tensor {name} with shape {reader.shape(name)}")
    if problems:
        raise CheckpointError(f"{reader.path}: " + "; ".join(problems))


def _zeros(shape: tuple[int, ...], dtype: jnp.dtype, sharding: NamedSharding | None):
    # Created on device in place: a host buffer of a whole stacked parameter could be huge.
    return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)()


@functools.cache
def _layer_setter(sharding: NamedSharding | None):
    # Donating the stack updates it in place: one copy of each parameter on device.
    return jax.jit(
        lambda stack, value, i: stack.at[i].set(value), donate_argnums=0, out_shardings=sharding
    )


# Activation dtypes a checkpoint's stored dtype may set; others (float16) use `dtype`.
COMPUTE_DTYPES = ("float32", "bfloat16")


def hf_model_config(
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    reader: CheckpointReader | None = None,
    **config_overrides: Any,
) -> registry.ModelConfig:
    """The model config of a HF checkpoint directory (its ``config.json`` only; arguments
    as in :func:`load_hf`).

    Raises:
      FileNotFoundError: no ``config.json`` in ``path``.
      CheckpointError: an architecture or variant this package does not implement.
    """
    reader = reader or CheckpointReader(path)
    # Computing in the checkpoint's own dtype is what transformers does; a float32
    # checkpoint computed in bfloat16 differs from it by 0.5-1% in the logits.
    stored = reader.config.get("torch_dtype") or reader.config.get("dtype")
    config_overrides.setdefault(
        "dtype", compute_dtype or (stored if stored in COMPUTE_DTYPES else dtype)
    )
    try:
        family = families.for_hf_config(reader.config)
        return family.config_from_hf(reader.config, param_dtype=dtype, **config_overrides)
    except ValueError as err:
        raise CheckpointError(f"{reader.path / CONFIG_FILE}: {err}") from None


def load_hf(
    path: str | os.PathLike,
    mesh: Mesh | None = None,
    *,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    rules: parallel.Rules = (),
    **config_overrides: Any,
) -> tuple[registry.Model, registry.ModelConfig]:
    """Loads a HF Gemma-2 or GPT-NeoX/Pythia checkpoint directory.

    Args:
      path: directory with ``config.json`` and ``model.safetensors`` or sharded
        ``model-0000i-of-0000n.safetensors`` plus ``model.safetensors.index.json``.
      mesh: devices to shard over; ``None`` puts everything on the default device.
      dtype: parameter dtype (checkpoint tensors are cast to it).
      compute_dtype: activation dtype; default the checkpoint's (``torch_dtype`` in its
        config.json, as transformers computes), else `dtype`.
      rules: (logical axis, mesh axis or None) pairs, e.g. ``[("embed", "fsdp")]``;
        logical axes not named, and mesh axes that do not divide a dimension, leave that
        dimension replicated (see :func:`c2s_jax.parallel.sharding_for`).
      **config_overrides: other fields of the model config to set, e.g. ``remat="full"``.

    Returns:
      (model, config). Every parameter comes from the checkpoint.

    Raises:
      FileNotFoundError: no ``config.json`` or no safetensors files in ``path``.
      CheckpointError: missing, unexpected or misshapen tensors (each named with the
        shape expected), or an architecture or variant this package does not implement.
    """
    reader = CheckpointReader(path)
    cfg = hf_model_config(
        path, dtype=dtype, compute_dtype=compute_dtype, reader=reader, **config_overrides
    )
    family = families.for_hf_config(reader.config)
    tensor_rules = family.tensor_rules(cfg)
    check_checkpoint(
        reader, expected_tensors(tensor_rules, cfg.num_layers), family.IGNORED_SUFFIXES
    )

    graphdef, abstract_state = nnx.split(registry.abstract_model(cfg))
    abstract = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(abstract_state)}

    def sharding(path: str, drop_layer_axis: bool) -> NamedSharding | None:
        if mesh is None:
            return None
        axes, shape = abstract[path].get_metadata()["out_sharding"], abstract[path].shape
        if drop_layer_axis:
            axes, shape = axes[1:], shape[1:]
        return parallel.sharding_for(axes, shape, mesh, rules)

    loaded: dict[str, jax.Array] = {}
    for rule in tensor_rules:
        for layer in range(cfg.num_layers) if rule.per_layer else [None]:
            parts = rule.to_ours(reader.read(rule.hf_key(layer)))
            for path, part in zip(rule.ours, parts, strict=True):
                target = abstract[path].get_value()
                shape = target.shape[1:] if rule.per_layer else target.shape
                if part.shape != shape:
                    raise CheckpointError(
                        f"{rule.hf_key(layer)} maps to {path} with shape {part.shape}, "
                        f"expected {shape}"
                    )
                value = jax.device_put(
                    np.asarray(part, target.dtype), sharding(path, rule.per_layer)
                )
                if layer is None:
                    loaded[path] = value
                    continue
                stack_sharding = sharding(path, False)
                if path not in loaded:
                    loaded[path] = _zeros(target.shape, target.dtype, stack_sharding)
                loaded[path] = _layer_setter(stack_sharding)(loaded[path], value, layer)

    missing = sorted(set(abstract) - set(loaded))
    if missing:
        raise CheckpointError(f"no checkpoint tensor maps to parameters {missing}")
    state = nnx.from_flat_state(
        {tuple(p.split("/")): abstract[p].replace(loaded[p]) for p in abstract}
    )
    return nnx.merge(graphdef, state), cfg
