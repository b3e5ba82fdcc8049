"""Our models as orbax checkpoint directories, rebuildable without any HF files.

A directory holds ``model_config.json`` (the family and every config field) and
``params/``, the model's parameter tree written by orbax. Restoring builds the model
abstractly from the config and lets orbax place each array straight onto its sharding.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from c2s_jax import parallel
from c2s_jax.checkpoints.load import CheckpointError
from c2s_jax.models import registry
from c2s_jax.storage.atomic import atomic_directory

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def save_flax(model: registry.Model, out_dir: str | os.PathLike) -> Path:
    """Writes ``model``'s parameters and config as an orbax checkpoint directory.

    Call it from a single process. Parameters may be sharded; they keep their dtype.

    Args:
      model: a Gemma-2 or Pythia model.
      out_dir: a missing or empty directory; it appears complete or not at all.

    Returns:
      ``out_dir`` as an absolute Path.

    Raises:
      InputError: ``out_dir`` exists and is not an empty directory.
    """
    description = registry.config_to_dict(model.config)
    out = Path(out_dir).absolute()
    with atomic_directory(out) as tmp:
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / PARAMS_DIR, nnx.to_pure_dict(nnx.state(model)))
        (tmp / CONFIG_FILE).write_text(json.dumps(description, indent=2))
    return out


def load_flax(
    ckpt_dir: str | os.PathLike,
    mesh: Mesh | None = None,
    *,
    rules: parallel.Rules = (),
    **config_overrides: Any,
) -> tuple[registry.Model, registry.ModelConfig]:
    """Restores a model that :func:`save_flax` wrote.

    Args:
      ckpt_dir: the checkpoint directory.
      mesh: devices to shard over; ``None`` puts everything on the default device.
      rules: (logical axis, mesh axis or None) pairs as in :func:`c2s_jax.checkpoints.load_hf`.
      **config_overrides: config fields that do not change parameter shapes, e.g.
        ``dtype="float32"`` or ``remat="full"``; a ``param_dtype`` casts the parameters.

    Returns:
      (model, config), every parameter read from the checkpoint.

    Raises:
      FileNotFoundError: ``ckpt_dir`` lacks ``model_config.json`` or ``params/``.
      CheckpointError: the config cannot be read, or the stored parameters do not match
        it (each missing, unexpected or misshapen one named, with the shape expected).
    """
    ckpt = Path(ckpt_dir).absolute()
    for needed in (ckpt / CONFIG_FILE, ckpt / PARAMS_DIR):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} not found: not a checkpoint that save_flax wrote")
    try:
        cfg = registry.config_from_dict(json.loads((ckpt / CONFIG_FILE).read_text()))
    except ValueError as err:  # json.JSONDecodeError included
        raise CheckpointError(f"{ckpt / CONFIG_FILE}: {err}") from None
    cfg = dataclasses.replace(cfg, **config_overrides)

    graphdef, abstract_state = nnx.split(registry.abstract_model(cfg))
    if mesh is None:
        device = SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, abstract_state)
    else:
        specs = nnx.get_partition_spec(abstract_state)
        shardings = parallel.tree_shardings(specs, abstract_state, mesh, rules)
    target = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        nnx.to_pure_dict(abstract_state),
        nnx.to_pure_dict(shardings),
    )
    with ocp.StandardCheckpointer() as checkpointer:
        stored = _shapes(checkpointer.metadata(ckpt / PARAMS_DIR).item_metadata)
        if not stored:
            raise CheckpointError(
                f"{ckpt / PARAMS_DIR} lists no parameters: its index is damaged or the copy is "
                "incomplete; export or copy the model again"
            )
        problems = _mismatches(stored, _shapes(target))
        if problems:
            raise CheckpointError(
                f"{ckpt / PARAMS_DIR} does not match {CONFIG_FILE}: " + "; ".join(problems)
            )
        params = checkpointer.restore(ckpt / PARAMS_DIR, target)
    nnx.replace_by_pure_dict(abstract_state, params)
    return nnx.merge(graphdef, abstract_state), cfg


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(k.key) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _mismatches(stored: dict[str, tuple], expected: dict[str, tuple]) -> list[str]:
    """Every missing, misshapen or unexpected parameter, named with the shape expected."""
    problems = []
    for name, shape in expected.items():
        if name not in stored:
            problems.append(f"missing parameter {name} (expected shape {shape})")
        elif stored[name] != shape:
            problems.append(f"parameter {name} has shape {stored[name]}, expected {shape}")
    problems += [f"unexpected parameter {name}" for name in sorted(set(stored) - set(expected))]
    return problems
