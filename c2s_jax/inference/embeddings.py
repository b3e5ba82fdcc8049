"""Cell embeddings: the mean of a model's last hidden states over a cell sentence's
tokens (padding and BOS excluded), for cells given as ranked gene symbols."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.tokenizer import GeneTable
from c2s_jax.models.parts import ModelParts

LENGTH_BUCKET = 64


def _masked_mean_hidden(parts: ModelParts, params, tokens_BT, segments_BT, mask_BT):
    hidden_BTD, _ = parts.model(params).hidden_states(tokens_BT, segment_ids=segments_BT)
    mask_BT1 = mask_BT[..., None].astype(jnp.float32)
    summed_BD = jnp.sum(hidden_BTD.astype(jnp.float32) * mask_BT1, axis=1)
    return summed_BD / jnp.maximum(mask_BT1.sum(axis=1), 1.0)


class CellEmbedder:
    """Embeds cells with a bundle's model.

    Args:
      bundle: a trained model bundle (its tokenizer and gene list are used).
      top_k: genes per cell (the most expressed first); None keeps all.
      batch_size: cells per forward pass.

    Calling it on ranked gene-symbol lists returns [n, d_model] float32 embeddings.
    """

    def __init__(self, bundle: Bundle, top_k: int | None = 100, batch_size: int = 32):
        graphdef, state = nnx.split(bundle.model)
        self.parts, self.params = ModelParts(graphdef, bundle.config), state
        self.tokenizer = bundle.tokenizer
        self.symbols = np.asarray(bundle.dataset()["genes"])
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.table = GeneTable.build(self.tokenizer, self.symbols)
        self.top_k = top_k
        self.batch_size = batch_size
        self.name = f"model:{bundle.path}"
        self._embed = jax.jit(functools.partial(_masked_mean_hidden, self.parts))

    def token_rows(self, cells: Sequence[Sequence[str]]) -> tuple[list[np.ndarray], np.ndarray]:
        """(token ids of each cell: BOS then its known genes, unknown genes per cell)."""
        head = [] if self.tokenizer.bos_id is None else [self.tokenizer.bos_id]
        rows, unknown = [], np.zeros(len(cells), np.int64)
        for i, genes in enumerate(cells):
            ids = [self.index[g] for g in (str(s).upper() for s in genes) if g in self.index]
            unknown[i] = len(genes) - len(ids)
            ids = np.asarray(ids[: self.top_k] if self.top_k else ids, np.int64)
            rows.append(np.concatenate([head, self.table.lookup(ids)]).astype(np.int32))
        return rows, unknown

    def __call__(self, cells: Sequence[Sequence[str]], progress: bool = False) -> np.ndarray:
        """[n, d_model] float32 embeddings of cells given as ranked gene symbols."""
        rows, _ = self.token_rows(cells)
        n_head = 0 if self.tokenizer.bos_id is None else 1
        out = []
        for start in tqdm(range(0, len(rows), self.batch_size), disable=not progress, unit="batch"):
            batch = rows[start : start + self.batch_size]
            T = -(-max(len(r) for r in batch) // LENGTH_BUCKET) * LENGTH_BUCKET
            tokens = np.zeros((self.batch_size, T), np.int32)
            segments = np.zeros((self.batch_size, T), np.int32)
            mask = np.zeros((self.batch_size, T), np.float32)
            for b, row in enumerate(batch):
                tokens[b, : len(row)], segments[b, : len(row)] = row, 1
                mask[b, n_head : len(row)] = 1
            embedded = self._embed(self.params, tokens, segments, mask)
            out.append(np.asarray(embedded)[: len(batch)])
        return np.concatenate(out) if out else np.zeros((0, self.parts.config.d_model), np.float32)
