"""The trainer's input: batch iterators named by `config.data`, placed onto the mesh.

A batch source yields host-local numpy batches (this host's rows of the global batch)
and has `get_state()`/`set_state()` so checkpoints can store its position.
"""

import dataclasses
from typing import Protocol

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from c2s_jax.errors import InputError
from c2s_jax.train.packing import BATCH_KEYS
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
    cfg: ml_collections.ConfigDict, vocab_size: int, batch_sharding: NamedSharding
) -> tuple[BatchSource, callable, list[str]]:
    """(train source, factory of fresh eval sources, task names) for `config.data`.

    `config.data.source` is 'corpus' (a folder written by `c2s corpus build`, at
    `config.data.corpus_dir`) or 'synthetic' (see synthetic_data.py).
    """
    data = cfg.data
    rows = host_batch_size(data.batch_size)
    if data.source == "synthetic":
        names = [f"task{i}" for i in range(data.num_tasks)]

        def source(seed: int) -> SyntheticBatches:
            return SyntheticBatches(
                rows, data.seq_len, vocab_size, data.num_tasks, seed, jax.process_index()
            )

        return source(cfg.seed), lambda: source(cfg.seed + 10_000), names
    if data.source == "corpus":
        return _corpus_sources(cfg, vocab_size, batch_sharding)
    raise InputError(f"config.data.source must be 'corpus' or 'synthetic', not {data.source!r}")


def _corpus_sources(cfg: ml_collections.ConfigDict, vocab_size: int, sharding: NamedSharding):
    from c2s_jax.corpus.records import read_metadata
    from c2s_jax.train.pipeline import CorpusLoader, LoaderOptions  # grain: only this path

    data = cfg.data
    if not data.corpus_dir:
        raise InputError("config.data.corpus_dir is empty: build one with `c2s corpus build`")
    meta = read_metadata(data.corpus_dir)
    pieces = int(meta["tokenizer"]["vocab_size"])
    if pieces > vocab_size:
        raise InputError(
            f"the corpus tokenizer has {pieces} pieces but the model's vocabulary has "
            f"{vocab_size}: set config.model.overrides.vocab_size >= {pieces}"
        )
    options = LoaderOptions(
        batch_size=data.batch_size,
        seq_len=data.seq_len,
        seed=cfg.seed,
        worker_count=data.get("worker_count", 0),
        # Examples packed together; small corpora (tests, notebooks) read less with less.
        pack_window=data.pack_window,
        task_weights=dict(data.task_weights) or None,
    )

    def loader(split: str) -> CorpusLoader:
        # Evaluation reads the validation split as the corpus mixed it.
        read = options if split == "train" else dataclasses.replace(options, task_weights=None)
        return CorpusLoader(data.corpus_dir, split, read, sharding.mesh, sharding.spec)

    return loader("train"), lambda: loader("validation"), list(meta["tasks"])


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
