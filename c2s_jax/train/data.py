"""The trainer's input: batch iterators named by `config.data`, placed onto the mesh.

A batch source yields host-local numpy batches (this host's rows of the global batch)
and has `get_state()`/`set_state()` so checkpoints can store its position.
"""

from typing import Protocol

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from c2s_jax.errors import InputError
from c2s_jax.train.step import BATCH_KEYS
from c2s_jax.train.synthetic_data import SyntheticBatches


class BatchSource(Protocol):
    """What the loop needs from an input pipeline."""

    def __next__(self) -> dict[str, np.ndarray]: ...

    def get_state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...


def host_batch_size(global_batch: int) -> int:
    """This host's rows of a global batch (it must divide evenly)."""
    hosts = jax.process_count()
    if global_batch % hosts:
        raise InputError(f"config.data.batch_size={global_batch} must divide over {hosts} hosts")
    return global_batch // hosts


def batch_sources(
    cfg: ml_collections.ConfigDict, vocab_size: int
) -> tuple[BatchSource, callable, list[str]]:
    """(train source, factory of fresh eval sources, task names) for `config.data`."""
    data = cfg.data
    rows = host_batch_size(data.batch_size)
    if data.source == "synthetic":
        names = [f"task{i}" for i in range(data.num_tasks)]

        def source(seed: int) -> SyntheticBatches:
            return SyntheticBatches(
                rows, data.seq_len, vocab_size, data.num_tasks, seed, jax.process_index()
            )

        return source(cfg.seed), lambda: source(cfg.seed + 10_000), names
    raise InputError(f"config.data.source must be 'synthetic', not {data.source!r}")


def to_global(batch: dict, sharding: NamedSharding) -> dict[str, jax.Array]:
    """Global arrays sharded over the batch axes.

    Host-local numpy rows are assembled across hosts; arrays that a pipeline already
    placed as global `jax.Array`s are only moved if their sharding differs.
    """
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise InputError(f"the input pipeline's batches lack {missing}")
    out = {}
    for key in BATCH_KEYS:
        value = batch[key]
        if isinstance(value, jax.Array):
            out[key] = value if value.sharding == sharding else jax.device_put(value, sharding)
        else:
            out[key] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return out
