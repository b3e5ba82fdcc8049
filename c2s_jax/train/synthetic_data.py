"""Synthetic token batches: for speed tests and sharding checks without a corpus.

Each batch is a pure function of (seed, batch index, host), so the iterator state is
one integer, and a restore continues with exactly the next batch.
"""

import numpy as np


class SyntheticBatches:
    """Endless random-token batches with the keys the train step reads.

    Every row is one example: a prompt of Zipf-distributed tokens, then the answer, which
    repeats the prompt (loss mask 1). Both the token frequencies and the copy can be
    learned, so the loss falls as it would on real text. Tasks cycle over `num_tasks`.

    Args:
      batch_size: rows per host (the host's share of the global batch).
      seq_len: tokens per row.
      vocab_size: tokens are drawn from [1, vocab_size).
      num_tasks: task ids to cycle through.
      seed: the data seed.
      host: this host's index (rows differ between hosts).
    """

    def __init__(
        self,
        batch_size: int,
        seq_len: int,
        vocab_size: int,
        num_tasks: int = 1,
        seed: int = 0,
        host: int = 0,
    ):
        self.batch_size, self.seq_len, self.vocab_size = batch_size, seq_len, vocab_size
        self.num_tasks, self.seed, self.host = num_tasks, seed, host
        self.index = 0

    def __iter__(self) -> "SyntheticBatches":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.host, self.index))
        self.index += 1
        half = (self.seq_len + 2) // 2
        zipf = 1.0 / np.arange(1, self.vocab_size)
        prompt = rng.choice(
            np.arange(1, self.vocab_size), (self.batch_size, half), p=zipf / zipf.sum()
        )
        sequence = np.concatenate([prompt, prompt], axis=1)[:, : self.seq_len + 1]
        tokens, targets = sequence[:, :-1], sequence[:, 1:]
        loss_mask = np.zeros_like(tokens)
        loss_mask[:, self.seq_len // 2 :] = 1
        rows = np.arange(self.batch_size)[:, None] + self.index * self.batch_size
        return {
            "tokens": tokens.astype(np.int32),
            "targets": targets.astype(np.int32),
            "loss_mask": loss_mask.astype(np.int32),
            "segment_ids": np.ones_like(tokens, np.int32),
            "positions": np.broadcast_to(
                np.arange(self.seq_len, dtype=np.int32), tokens.shape
            ).copy(),
            "task_id": np.broadcast_to(rows % self.num_tasks, tokens.shape).astype(np.int32),
        }

    def get_state(self) -> dict:
        """JSON-able position of the iterator."""
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        """Continues from a state returned by `get_state`."""
        self.index = int(state["index"])
