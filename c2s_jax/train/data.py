"""The trainer's input: batch iterators a :class:`DataSpec` names, placed onto the mesh.

A batch source yields host-local numpy batches (this host's rows of the global batch)
and has `get_state()`/`set_state()` so checkpoints can store its position.
"""

import dataclasses
from collections.abc import Callable, Mapping
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


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The trainer's input: `config.data` and `config.seed`, read once (no field has a
    default here: the defaults live in train/default_config.py alone).

    Attributes:
      source: 'corpus' (a folder written by `c2s corpus build`, at `corpus_dir`) or
        'synthetic' (see synthetic_data.py).
      batch_size: rows per global batch (all hosts together).
      seq_len: tokens per row; longer examples are cut, shorter ones packed together.
      seed: seeds the data order (evaluation sources use their own fixed order).
      corpus_dir: the corpus folder when `source` is 'corpus'.
      num_tasks: tasks of the synthetic source.
      worker_count: grain worker processes reading the corpus (0: in this process).
      pack_window: corpus examples packed together at a time.
      task_weights: task -> weight of the training mixture; empty keeps the corpus's own.
    """

    source: str
    batch_size: int
    seq_len: int
    seed: int
    corpus_dir: str
    num_tasks: int
    worker_count: int
    pack_window: int
    task_weights: Mapping[str, float]

    @classmethod
    def from_config(cls, cfg: ml_collections.ConfigDict) -> "DataSpec":
        """The spec of a training config."""
        data = cfg.data
        return cls(
            source=data.source,
            batch_size=int(data.batch_size),
            seq_len=int(data.seq_len),
            seed=int(cfg.seed),
            corpus_dir=str(data.corpus_dir),
            num_tasks=int(data.num_tasks),
            worker_count=int(data.worker_count),
            pack_window=int(data.pack_window),
            task_weights=dict(data.task_weights),
        )


def batch_sources(
    spec: DataSpec, vocab_size: int, batch_sharding: NamedSharding
) -> tuple[BatchSource, Callable[[], BatchSource], list[str]]:
    """(train source, factory of fresh eval sources, task names) of `spec`."""
    rows = host_batch_size(spec.batch_size)
    if spec.source == "synthetic":
        names = [f"task{i}" for i in range(spec.num_tasks)]

        def source(seed: int) -> SyntheticBatches:
            return SyntheticBatches(
                rows, spec.seq_len, vocab_size, spec.num_tasks, seed, jax.process_index()
            )

        return source(spec.seed), lambda: source(spec.seed + 10_000), names
    if spec.source == "corpus":
        return _corpus_sources(spec, vocab_size, batch_sharding)
    raise InputError(f"config.data.source must be 'corpus' or 'synthetic', not {spec.source!r}")


def _corpus_sources(spec: DataSpec, vocab_size: int, sharding: NamedSharding):
    from c2s_jax.corpus.records import read_metadata
    from c2s_jax.train.pipeline import CorpusLoader, LoaderOptions  # grain: only this path

    if not spec.corpus_dir:
        raise InputError("config.data.corpus_dir is empty: build one with `c2s corpus build`")
    meta = read_metadata(spec.corpus_dir)
    pieces = int(meta["tokenizer"]["vocab_size"])
    if pieces > vocab_size:
        raise InputError(
            f"the corpus tokenizer has {pieces} pieces but the model's vocabulary has "
            f"{vocab_size}: set config.model.overrides.vocab_size >= {pieces}"
        )
    options = LoaderOptions(
        batch_size=spec.batch_size,
        seq_len=spec.seq_len,
        seed=spec.seed,
        worker_count=spec.worker_count,
        # Examples packed together; small corpora (tests, notebooks) read less with less.
        pack_window=spec.pack_window,
        task_weights=dict(spec.task_weights) or None,
    )

    def loader(split: str) -> CorpusLoader:
        # Evaluation reads the validation split as the corpus mixed it.
        read = options if split == "train" else dataclasses.replace(options, task_weights=None)
        return CorpusLoader(spec.corpus_dir, split, read, sharding.mesh, sharding.spec)

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
