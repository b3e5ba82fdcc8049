"""Our model -> HF safetensors checkpoint directory that transformers loads."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from c2s_jax.checkpoints import families
from c2s_jax.checkpoints.hf_tokenizer import (
    generation_config,
    special_token_ids,
    write_tokenizer_files,
)
from c2s_jax.checkpoints.safetensors_io import write_checkpoint
from c2s_jax.corpus.tokenizer import Tokenizer
from c2s_jax.models import registry
from c2s_jax.storage.atomic import atomic_directory


def export_hf(
    model: registry.Model,
    out_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    max_shard_bytes: int = 4 * 2**30,
    tokenizer: Tokenizer | None = None,
    max_length: int | None = None,
    card: str | None = None,
) -> Path:
    """Writes ``model`` as a HF checkpoint (config.json + safetensors) into ``out_dir``;
    with a tokenizer, also its files, its special ids in config.json and a
    generation_config.json, so transformers serves the folder as is.

    Args:
      model: a Gemma-2 or Pythia model (parameters may be sharded; they are gathered one
        tensor, or one layer of a stacked tensor, at a time).
      out_dir: a missing or empty directory; it appears complete or not at all.
      dtype: storage dtype (``"float32"``, ``"bfloat16"``, ...); default the parameter dtype.
        Exporting in the dtype the checkpoint was loaded from reproduces it bit for bit.
      max_shard_bytes: split into ``model-0000i-of-0000n.safetensors`` files above this size.
      tokenizer: the model's tokenizer (see `hf_tokenizer.write_tokenizer_files`).
      max_length: the trained sequence length (the tokenizer's ``model_max_length``).
      card: the model card (``README.md``).

    Returns:
      ``out_dir`` as a Path.

    Raises:
      InputError: ``out_dir`` exists and is not an empty directory.
    """
    cfg = model.config
    family = families.for_config(cfg)
    dtype = dtype or cfg.param_dtype
    np_dtype = jnp.dtype(dtype)
    params = {
        "/".join(map(str, p)): v.get_value()
        for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }

    def host(path: str, layer: int | None) -> np.ndarray:
        value = params[path] if layer is None else params[path][layer]
        return np.asarray(jax.device_get(value))

    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        for rule in family.tensor_rules(cfg):
            for layer in range(cfg.num_layers) if rule.per_layer else [None]:
                parts = [host(path, layer) for path in rule.ours]
                yield rule.hf_key(layer), rule.to_hf(*parts).astype(np_dtype)

    config = family.config_to_hf(cfg, dtype)
    if tokenizer is not None:
        config.update(special_token_ids(tokenizer))
    with atomic_directory(out_dir) as tmp:
        write_checkpoint(tmp, config, tensors(), max_shard_bytes)
        if tokenizer is not None:
            write_tokenizer_files(tokenizer, tmp, max_length)
            (tmp / "generation_config.json").write_text(
                json.dumps(generation_config(tokenizer), indent=1)
            )
        if card is not None:
            (tmp / "README.md").write_text(card)
    return Path(out_dir)
