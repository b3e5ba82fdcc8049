"""Per-cell gene ranking and sentence text, as compiled kernels over CSR rows.

A cell's genes are ordered by descending expression; ties are broken by a hash of
(seed, cell ordinal, gene id). The hash makes the order a pure function of the cell, so it
does not depend on the chunk size, the thread count or which other cells share the chunk,
yet it is a uniformly random permutation of each tied group.

Each row is sorted on one 64-bit key: the high 32 bits order by expression (descending) and
the low 32 bits carry the tie-break hash. Rows are independent, so they run in parallel.
"""

import numba
import numpy as np
import scipy.sparse as sp

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_A = np.uint64(0xBF58476D1CE4E5B9)
_MIX_B = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def _mix64(z):
    # splitmix64's finalizer: a bijection on uint64 whose output bits all depend on all inputs.
    z = (z ^ (z >> np.uint64(30))) * _MIX_A
    z = (z ^ (z >> np.uint64(27))) * _MIX_B
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, parallel=True)
def _rank_rows(value_key, gene_ids, indptr, cell_ordinals, seed, keep_gene, top_k, out_indptr, out):
    n_rows = indptr.shape[0] - 1
    all_ones = np.uint64(0xFFFFFFFF)
    for row in numba.prange(n_rows):
        start, stop = indptr[row], indptr[row + 1]
        cell_salt = _mix64(seed + _GOLDEN * (cell_ordinals[row] + np.uint64(1)))
        keys = np.empty(stop - start, np.uint64)
        ids = np.empty(stop - start, np.int32)
        n = 0
        for j in range(start, stop):
            gene = gene_ids[j]
            if value_key[j] == 0 or not keep_gene[gene]:
                continue
            tie_break = _mix64(cell_salt ^ (np.uint64(gene) * _GOLDEN)) >> np.uint64(32)
            keys[n] = ((all_ones - np.uint64(value_key[j])) << np.uint64(32)) | tie_break
            ids[n] = gene
            n += 1
        order = np.argsort(keys[:n])
        first = out_indptr[row]
        for j in range(min(n, top_k)):
            out[first + j] = ids[order[j]]


@numba.njit(cache=True, parallel=True)
def _count_kept(value_key, gene_ids, indptr, keep_gene, top_k, counts):
    for row in numba.prange(indptr.shape[0] - 1):
        n = 0
        for j in range(indptr[row], indptr[row + 1]):
            if value_key[j] != 0 and keep_gene[gene_ids[j]]:
                n += 1
        counts[row] = min(n, top_k)


def expression_order_key(values: np.ndarray) -> np.ndarray:
    """Maps expression values [nnz] to uint32 keys with the same order; 0 means not expressed.

    float32 >= 0 compares like its bit pattern, so it is used as is (exact). Other dtypes are
    replaced by their dense rank among the block's distinct values, which keeps every
    distinction float64 makes.
    """
    if values.dtype == np.float32:
        return np.where(values > 0, values, np.float32(0)).view(np.uint32)
    distinct, rank = np.unique(values, return_inverse=True)
    zero_rank = np.searchsorted(distinct, 0, side="right")
    key = (rank.astype(np.int64) - zero_rank + 1).clip(min=0)
    return key.astype(np.uint32)


def rank_genes(
    block_CG: sp.csr_matrix,
    cell_ordinals: np.ndarray,
    seed: int,
    keep_gene: np.ndarray,
    top_k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Orders each cell's expressed genes by descending expression.

    Args:
      block_CG: csr [cells, genes] of non-negative expression (counts or normalized).
      cell_ordinals: [cells] uint64 identity of each cell for the tie-break (its row in the
        whole dataset, salted per file), independent of chunking.
      seed: the tie-break seed.
      keep_gene: [genes] bool; genes set False never appear.
      top_k: keep only the first K genes of each cell (None keeps all).

    Returns:
      (gene_ids [total] int32, indptr [cells + 1] int64): cell i's ranked gene ids are
      gene_ids[indptr[i]:indptr[i + 1]].
    """
    value_key = expression_order_key(block_CG.data)
    gene_ids = block_CG.indices.astype(np.int32, copy=False)
    indptr = block_CG.indptr.astype(np.int64, copy=False)
    keep = np.ascontiguousarray(keep_gene, dtype=np.bool_)
    limit = np.iinfo(np.int64).max if top_k is None else int(top_k)
    counts = np.empty(block_CG.shape[0], np.int64)
    _count_kept(value_key, gene_ids, indptr, keep, limit, counts)
    out_indptr = np.zeros(block_CG.shape[0] + 1, np.int64)
    np.cumsum(counts, out=out_indptr[1:])
    out = np.empty(out_indptr[-1], np.int32)
    ordinals = np.ascontiguousarray(cell_ordinals, dtype=np.uint64)
    _rank_rows(value_key, gene_ids, indptr, ordinals, np.uint64(seed), keep, limit, out_indptr, out)
    return out, out_indptr


@numba.njit(cache=True, parallel=True)
def _fill_text(gene_ids, indptr, symbol_bytes, symbol_offsets, text_offsets, text):
    space = np.uint8(32)
    for row in numba.prange(indptr.shape[0] - 1):
        pos = text_offsets[row]
        for j in range(indptr[row], indptr[row + 1]):
            if j > indptr[row]:
                text[pos] = space
                pos += 1
            gene = gene_ids[j]
            for b in range(symbol_offsets[gene], symbol_offsets[gene + 1]):
                text[pos] = symbol_bytes[b]
                pos += 1


class SentenceWriter:
    """Turns ranked gene ids into space-joined sentences as Arrow string buffers.

    Building the UTF-8 bytes and offsets directly avoids one Python string per cell, which
    would otherwise cost more than the ranking itself.
    """

    def __init__(self, symbols: np.ndarray):
        encoded = [s.encode("utf-8") for s in symbols]
        self._lengths = np.array([len(b) for b in encoded], np.int64)
        self._offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(self._lengths, out=self._offsets[1:])
        self._bytes = np.frombuffer(b"".join(encoded), np.uint8)

    def text_buffers(
        self, gene_ids: np.ndarray, indptr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(utf8 bytes [total], offsets [cells + 1] int64) of the sentences of each cell."""
        cumulative = np.zeros(len(gene_ids) + 1, np.int64)
        np.cumsum(self._lengths[gene_ids], out=cumulative[1:])
        word_bytes = cumulative[indptr[1:]] - cumulative[indptr[:-1]]
        n_words = np.diff(indptr)
        row_bytes = np.where(n_words > 0, word_bytes + n_words - 1, 0)
        offsets = np.zeros(len(indptr), np.int64)
        np.cumsum(row_bytes, out=offsets[1:])
        text = np.empty(offsets[-1], np.uint8)
        _fill_text(gene_ids, indptr, self._bytes, self._offsets, offsets, text)
        return text, offsets
