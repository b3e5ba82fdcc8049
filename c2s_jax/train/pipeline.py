"""The input pipeline: corpus records -> packed [B, T] batches as global jax.Arrays.

Stages (grain): the split's ArrayRecord source (all parts) -> global shuffle by index
(a fresh permutation every epoch) -> this host's share (process_index::process_count) ->
packing into fixed-shape batches (packing.py) -> worker processes and prefetch -> one
global `jax.Array` per key, sharded over the mesh's batch axes.

The batch, for global batch size B and sequence length T (all int32 [B, T]):

  tokens       input token ids
  targets      the token that follows `tokens[b, t]` in the same example; targets are
               shifted inside each example, never across examples
  loss_mask    1 where `targets[b, t]` is an answer token (or the closing EOS) and so
               enters the loss; 0 on prompt targets and padding
  segment_ids  1, 2, ... for the examples packed into a row, 0 on padding: attention
               stays within a segment
  positions    0..L-2 within each example (RoPE positions)
  task_id      index into `corpus.json["tasks"]` of each position's task (per-task losses)

The loader's state (`get_state`/`set_state`, JSON-ready) restores to exactly the next
batch; save it with the training checkpoint.
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grain
import jax
import numpy as np
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from c2s_jax.corpus.records import data_source, longest_key, read_metadata
from c2s_jax.errors import InputError
from c2s_jax.train.packing import BATCH_KEYS, PackedBatchDataset


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
    """How batches are made.

    Attributes:
      batch_size: global rows per batch (divided evenly among hosts).
      seq_len: positions per row.
      seed: seed of the shuffle and of the row order.
      num_epochs: passes over the split (None: forever).
      pack_window: examples packed together (fuller rows vs. longer restores).
      worker_count: worker processes that read and pack (0: in this process).
      prefetch: batches prepared ahead per worker.
      read_threads: threads reading records ahead of packing. Decoding holds the GIL, so
        on local disk 0 (read in line) is fastest; threads pay off when reads wait on
        remote storage (gs://).
      read_buffer: records read ahead when read_threads > 0.
      task_weights: task -> weight of a mixture over the split's records of each task,
        instead of the corpus's own mixture (None); tasks left out, or of weight 0, are
        not read. Each task's records repeat on their own, so it needs num_epochs None.
    """

    batch_size: int
    seq_len: int
    seed: int = 0
    num_epochs: int | None = None
    pack_window: int = 4096
    worker_count: int = 0
    prefetch: int = 4
    read_threads: int = 0
    read_buffer: int = 64
    task_weights: dict[str, float] | None = None


class _RecordToExample(grain.transforms.Map):
    """Decoded record -> the fields packing needs, with the task as its id."""

    def __init__(self, task_ids: dict[str, int]):
        self.task_ids = task_ids

    def map(self, record: dict) -> dict:
        task = record["task"]
        task = task.decode() if isinstance(task, bytes) else task
        return {
            "tokens": record["tokens"],
            "loss_mask": record["loss_mask"],
            "task_id": self.task_ids[task],
        }


class _Records:
    """The records of a source at chosen indices (one task's share of a split)."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[int(self.indices[index])]


def _task_mixture(
    corpus_dir, split: str, source, options: LoaderOptions, process_index: int, process_count: int
) -> grain.MapDataset:
    """This host's records, tasks mixed by `options.task_weights` (each task shuffled and
    repeated on its own, then interleaved in proportion to its weight)."""
    from c2s_jax.corpus.records import task_index

    tasks = read_metadata(corpus_dir)["tasks"]
    weights = dict(options.task_weights)
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise InputError(
            f"config key 'data.task_weights' names tasks {unknown} that the corpus lacks "
            f"(it holds {tasks})"
        )
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise InputError("config key 'data.task_weights': weights must be >= 0, some > 0")
    if options.num_epochs is not None:
        raise InputError("task weights repeat each task on its own: use num_epochs=None")
    ids = task_index(corpus_dir, split)
    parts, shares = [], []
    for task_id, task in enumerate(tasks):
        if weights.get(task, 0) <= 0:
            continue
        indices = np.flatnonzero(ids == task_id)
        if len(indices) < process_count:
            raise InputError(
                f"config key 'data.task_weights.{task}': the {split} split holds "
                f"{len(indices)} records of it, fewer than the {process_count} hosts"
            )
        part = grain.MapDataset.source(_Records(source, indices))
        part = part.shuffle(seed=options.seed + task_id)[process_index::process_count]
        parts.append(part.repeat(None))
        shares.append(weights[task])
    return grain.MapDataset.mix(parts, shares)


def _check_rows_hold_records(meta: dict, split: str, seq_len: int) -> None:
    """Refuses rows too short for the split's longest record: a cut record would lose its
    prompt's start, and training would quietly learn from a different task."""
    longest = meta["counts"].get(longest_key(split))
    # Corpora built before the longest record was counted: their seq_len bounds it.
    bound = "longest record" if longest is not None else "records (at most its seq_len)"
    longest = longest if longest is not None else meta["seq_len"]
    # A row of seq_len positions holds seq_len + 1 tokens: inputs and their next token.
    if longest > seq_len + 1:
        raise InputError(
            f"config.data.seq_len={seq_len} is too short for the corpus's {split} {bound}: "
            f"{longest} tokens (corpus.json) need config.data.seq_len >= {longest - 1}"
        )


def host_batches(
    corpus_dir: str | Path,
    split: str,
    options: LoaderOptions,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """This host's packed batches as numpy dicts [B / process_count, T] (BATCH_KEYS).

    Args:
      corpus_dir: a folder written by `c2s corpus build`.
      split: 'train', 'validation' or 'test'.
      options: see LoaderOptions.
      process_index, process_count: this host's place (default: jax's).
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if options.batch_size % process_count:
        raise InputError(
            f"batch size {options.batch_size} must divide evenly among {process_count} hosts"
        )
    meta = read_metadata(corpus_dir)
    _check_rows_hold_records(meta, split, options.seq_len)
    task_ids = {task: i for i, task in enumerate(meta["tasks"])}
    source = data_source(corpus_dir, split)
    if options.task_weights is None:
        dataset = grain.MapDataset.source(source)
        dataset = dataset.shuffle(seed=options.seed)[process_index::process_count]
        dataset = dataset.repeat(options.num_epochs)
    else:
        dataset = _task_mixture(corpus_dir, split, source, options, process_index, process_count)
    dataset = dataset.map(_RecordToExample(task_ids))
    batches = PackedBatchDataset(
        dataset.to_iter_dataset(
            grain.ReadOptions(
                num_threads=options.read_threads,
                prefetch_buffer_size=options.read_buffer if options.read_threads else 0,
            )
        ),
        batch_size=options.batch_size // process_count,
        seq_len=options.seq_len,
        window=options.pack_window,
        seed=options.seed,
    )
    if options.worker_count > 0:
        # Grain's workers read its absl flags; outside an absl app they are unparsed, and
        # marking them parsed gives grain its defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        batches = batches.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=options.worker_count, per_worker_buffer_size=options.prefetch
            )
        )
    return batches


class CorpusLoader:
    """Global batches on a mesh: iterate for dicts of jax.Array [B, T] (see module doc).

    Args:
      corpus_dir: a folder written by `c2s corpus build`.
      split: 'train', 'validation' or 'test'.
      options: see LoaderOptions.
      mesh: the device mesh (on one CPU device, a 1-device mesh).
      batch_spec: how the batch dimension lies on the mesh, e.g. P(('data', 'fsdp')).
    """

    def __init__(
        self,
        corpus_dir: str | Path,
        split: str,
        options: LoaderOptions,
        mesh: Mesh,
        batch_spec: PartitionSpec,
    ):
        self.options = options
        self.sharding = NamedSharding(mesh, batch_spec)
        self._iterator = iter(host_batches(corpus_dir, split, options))

    def __iter__(self) -> Iterator[dict[str, jax.Array]]:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        local = next(self._iterator)
        shape = (self.options.batch_size, self.options.seq_len)
        return {
            key: jax.make_array_from_process_local_data(self.sharding, np.asarray(value), shape)
            for key, value in local.items()
            if key in BATCH_KEYS
        }

    def get_state(self) -> dict:
        """JSON-ready position in the stream (store it with the checkpoint)."""
        return self._iterator.get_state()

    def set_state(self, state: dict) -> None:
        """Continues with exactly the batch that followed when `state` was taken."""
        self._iterator.set_state(state)
