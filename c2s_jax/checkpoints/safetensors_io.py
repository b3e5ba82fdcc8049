"""Reading and writing HF checkpoint directories one tensor at a time.

A directory holds ``config.json`` and either ``model.safetensors`` or shards
``model-0000i-of-0000n.safetensors`` listed in ``model.safetensors.index.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from c2s_jax.errors import InputError

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# The dtypes model weights are stored in (bfloat16 through ml_dtypes).
WEIGHT_DTYPES = ("float32", "bfloat16", "float16", "float64")
# transformers refuses safetensors files whose metadata does not name a framework.
_FILE_METADATA = {"format": "pt"}


class CheckpointReader:
    """Random access to the tensors of a HF checkpoint without loading them all.

    Files are memory-mapped; :meth:`read` materialises a single tensor as a numpy array
    (bfloat16 via ml_dtypes).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        config_path = self.path / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: not a HF checkpoint directory")
        self.config: dict[str, Any] = json.loads(config_path.read_text())
        if (self.path / INDEX_FILE).is_file():
            weight_map = json.loads((self.path / INDEX_FILE).read_text())["weight_map"]
        elif (self.path / SINGLE_FILE).is_file():
            with safe_open(self.path / SINGLE_FILE, framework="numpy") as f:
                weight_map = dict.fromkeys(f.keys(), SINGLE_FILE)
        else:
            raise FileNotFoundError(f"neither {SINGLE_FILE} nor {INDEX_FILE} in {self.path}")
        for file in sorted(set(weight_map.values())):
            if not (self.path / file).is_file():
                raise FileNotFoundError(f"{self.path / file} is listed in {INDEX_FILE} but missing")
        self._file_of: dict[str, str] = weight_map
        self._handles: dict[str, Any] = {}

    def _handle(self, name: str):
        file = self._file_of[name]
        if file not in self._handles:
            self._handles[file] = safe_open(self.path / file, framework="numpy")
        return self._handles[file]

    def names(self) -> list[str]:
        """All tensor names in the checkpoint."""
        return list(self._file_of)

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of tensor ``name``, read from the file header only."""
        return tuple(self._handle(name).get_slice(name).get_shape())

    def read(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a numpy array in its stored dtype.

        Raises:
          InputError: the tensor is not floating point (a model weight never is integer or
            boolean; casting one would load a model that silently computes nonsense).
        """
        array = self._handle(name).get_tensor(name)
        if array.dtype.name not in WEIGHT_DTYPES:
            raise InputError(
                f"{self.path / self._file_of[name]}: tensor '{name}' is stored as "
                f"{array.dtype.name}, not as a floating-point weight ({', '.join(WEIGHT_DTYPES)})"
                "; this is not the checkpoint of a model, or it was written wrongly"
            )
        return array


def write_checkpoint(
    out_dir: str | os.PathLike,
    config: dict[str, Any],
    tensors: Iterable[tuple[str, np.ndarray]],
    max_shard_bytes: int,
) -> Path:
    """Writes ``config`` and the (name, array) stream as a HF checkpoint directory.

    At most about ``max_shard_bytes`` of tensors are held in host memory at once; more
    than one shard gets the HF ``model-0000i-of-0000n`` names and an index.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[Path, list[str]]] = []
    shard: dict[str, np.ndarray] = {}
    shard_bytes = total_bytes = 0

    def flush():
        part = out / f"model-part-{len(parts):05d}.safetensors.tmp"
        save_file(shard, str(part), metadata=_FILE_METADATA)
        parts.append((part, list(shard)))
        shard.clear()

    for name, array in tensors:
        if shard and shard_bytes + array.nbytes > max_shard_bytes:
            flush()
            shard_bytes = 0
        shard[name] = np.ascontiguousarray(array)
        shard_bytes += array.nbytes
        total_bytes += array.nbytes
    if shard or not parts:
        flush()

    if len(parts) == 1:
        parts[0][0].replace(out / SINGLE_FILE)
    else:
        weight_map = {}
        for k, (part, names) in enumerate(parts):
            final = f"model-{k + 1:05d}-of-{len(parts):05d}.safetensors"
            part.replace(out / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
        (out / INDEX_FILE).write_text(json.dumps(index, indent=2))
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return out
