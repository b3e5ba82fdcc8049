"""Packing examples into fixed-shape [B, T] batches with segment ids and positions.

Examples are read in windows of `window` examples. Each window is packed first-fit
decreasing (longest first, each into the first row with room), its rows are shuffled and
emitted B at a time; the last batch of a window is completed with empty rows. Because a
window is packed from scratch, the iterator's state is just (parent state at the window's
start, window number, batches already emitted from it): restoring re-reads the window and
continues with exactly the next batch, and the state stays a few numbers however long the
rows are.

Per example with L tokens the packed row gets L - 1 positions: `tokens` = its tokens
without the last, `targets` = its tokens without the first (the next token at every
position), `loss_mask` = its loss mask without the first (so it marks targets that are
answer tokens), `segment_ids` = the example's 1-based slot in the row, `positions` =
0..L-2 and `task_id` = its task. Padding has segment id 0 and zeros elsewhere.
"""

from typing import Any

import grain
import numpy as np

BATCH_KEYS = ("tokens", "targets", "loss_mask", "segment_ids", "positions", "task_id")


def pack_rows(lengths: np.ndarray, seq_len: int) -> list[list[int]]:
    """First-fit decreasing: item indices per row, every row's lengths summing to <= seq_len.

    Args:
      lengths: [n] item lengths, each in 1..seq_len.
      seq_len: row capacity.
    """
    order = np.argsort(-lengths, kind="stable")
    free = np.zeros(0, np.int64)
    rows: list[list[int]] = []
    for item in order:
        need = lengths[item]
        fits = np.flatnonzero(free >= need)
        if fits.size:
            row = int(fits[0])
            free[row] -= need
            rows[row].append(int(item))
        else:
            free = np.append(free, seq_len - need)
            rows.append([int(item)])
    return rows


def assemble_batch(examples: list[dict], rows: list[list[int]], batch_size: int, seq_len: int):
    """[B, T] arrays (BATCH_KEYS) of `rows` of `examples`, padded with empty rows."""
    batch = {key: np.zeros((batch_size, seq_len), np.int32) for key in BATCH_KEYS}
    for r, row in enumerate(rows):
        start = 0
        for segment, item in enumerate(row, start=1):
            example = examples[item]
            tokens = example["tokens"]
            n = len(tokens) - 1
            end = start + n
            batch["tokens"][r, start:end] = tokens[:-1]
            batch["targets"][r, start:end] = tokens[1:]
            batch["loss_mask"][r, start:end] = example["loss_mask"][1:]
            batch["segment_ids"][r, start:end] = segment
            batch["positions"][r, start:end] = np.arange(n)
            batch["task_id"][r, start:end] = example["task_id"]
            start = end
    return batch


class PackedBatchDataset(grain.IterDataset):
    """Packs a stream of examples into [batch_size, seq_len] batches (see module doc).

    Args:
      parent: examples with `tokens` [L] int32 (L >= 2), `loss_mask` [L] and `task_id`.
      batch_size: rows per batch.
      seq_len: positions per row; longer examples keep their last seq_len + 1 tokens
        (their answers end them).
      window: examples packed together (larger: fuller rows, longer restores).
      seed: seed of the row order within each window.
    """

    def __init__(
        self, parent: grain.IterDataset, batch_size: int, seq_len: int, window: int, seed: int
    ):
        super().__init__(parent)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.window = window
        self.seed = seed

    def __iter__(self) -> "PackedBatchIterator":
        return PackedBatchIterator(self._parent.__iter__(), self)

    def __str__(self) -> str:
        return f"PackedBatchDataset(batch_size={self.batch_size}, seq_len={self.seq_len})"


class PackedBatchIterator(grain.DatasetIterator):
    """Iterator of `PackedBatchDataset`; its state restores to the exact next batch."""

    def __init__(self, parent: grain.DatasetIterator, config: PackedBatchDataset):
        super().__init__(parent)
        self._config = config
        self._window_start = parent.get_state()
        self._window_number = 0
        self._emitted = 0
        self._examples: list[dict] = []
        self._batches: list[list[list[int]]] = []

    def __next__(self) -> dict[str, np.ndarray]:
        if self._emitted == len(self._batches):
            if self._batches:
                self._window_start = self._parent.get_state()
                self._window_number += 1
                self._emitted = 0
            self._read_window()
            if not self._batches:
                raise StopIteration
        rows = self._batches[self._emitted]
        self._emitted += 1
        config = self._config
        return assemble_batch(self._examples, rows, config.batch_size, config.seq_len)

    def _read_window(self) -> None:
        config = self._config
        self._examples = []
        for _ in range(config.window):
            try:
                example = next(self._parent)
            except StopIteration:
                break
            if len(example["tokens"]) > config.seq_len + 1:
                # host_batches checks corpus.json's longest record first; a record longer
                # than it claims means the records and corpus.json disagree.
                raise ValueError(
                    f"a record of {len(example['tokens'])} tokens does not fit rows of "
                    f"{config.seq_len} positions; corpus.json's longest record says it should"
                )
            self._examples.append(example)
        lengths = np.array([len(e["tokens"]) - 1 for e in self._examples], np.int64)
        rows = pack_rows(lengths, config.seq_len) if len(lengths) else []
        order = np.random.default_rng([config.seed, self._window_number]).permutation(len(rows))
        rows = [rows[i] for i in order]
        size = config.batch_size
        self._batches = [rows[i : i + size] for i in range(0, len(rows), size)]

    def get_state(self) -> dict[str, Any]:
        return {
            "window_start": self._window_start,
            "window_number": self._window_number,
            "emitted": self._emitted,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["window_start"])
        self._window_start = state["window_start"]
        self._window_number = state["window_number"]
        self._read_window()
        self._emitted = state["emitted"]
