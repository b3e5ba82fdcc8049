"""Per-cell gene ranking and sentence text, as compiled kernels over CSR rows.

A cell's genes are ordered by descending expression with a stable LSD radix sort on a
32-bit expression key (linear time; digits that are equal across the row are skipped, and
counts have few distinct values). Each run of tied genes is then shuffled (Fisher-Yates)
with random numbers hashed from (seed, cell ordinal, position), so the order is a
uniformly random permutation of every tied group, yet a pure function of the cell: it does
not depend on the chunk size, the thread count or the other cells of the chunk. Rows are
independent, so they run in parallel.
"""

import numba
import numpy as np
import scipy.sparse as sp

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_A = np.uint64(0xBF58476D1CE4E5B9)
_MIX_B = np.uint64(0x94D049BB133111EB)
_DIGIT_BITS = 11
_DIGIT_MASK = (1 << _DIGIT_BITS) - 1


@numba.njit(cache=True, inline="always")
def _mix64(z):
    # splitmix64's finalizer: a bijection on uint64 whose output bits all depend on all inputs.
    z = (z ^ (z >> np.uint64(30))) * _MIX_A
    z = (z ^ (z >> np.uint64(27))) * _MIX_B
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _radix_sort_descending(keys, ids):
    """Stable sort of `ids` by descending `keys` (uint32); returns (keys, ids) sorted."""
    n = keys.shape[0]
    for j in range(n):
        keys[j] = np.uint32(0xFFFFFFFF) - keys[j]  # ascending order of this = descending keys
    spare_keys = np.empty_like(keys)
    spare_ids = np.empty_like(ids)
    histogram = np.empty(_DIGIT_MASK + 1, np.int64)
    for shift in range(0, 32, _DIGIT_BITS):
        histogram[:] = 0
        for j in range(n):
            histogram[(keys[j] >> shift) & _DIGIT_MASK] += 1
        if histogram.max() == n:
            continue  # every key has this digit: the pass would not move anything
        start = 0
        for digit in range(_DIGIT_MASK + 1):
            count = histogram[digit]
            histogram[digit] = start
            start += count
        for j in range(n):
            digit = (keys[j] >> shift) & _DIGIT_MASK
            slot = histogram[digit]
            histogram[digit] = slot + 1
            spare_keys[slot] = keys[j]
            spare_ids[slot] = ids[j]
        keys, spare_keys = spare_keys, keys
        ids, spare_ids = spare_ids, ids
    return keys, ids


@numba.njit(cache=True, inline="always")
def _shuffle_ties(keys, ids, cell_salt):
    """Fisher-Yates shuffle of each run of equal keys, from hashed random numbers."""
    n = keys.shape[0]
    first = 0
    while first < n:
        stop = first + 1
        while stop < n and keys[stop] == keys[first]:
            stop += 1
        for i in range(stop - first - 1, 0, -1):
            draw = _mix64(cell_salt ^ (np.uint64(first) * _GOLDEN + np.uint64(i)))
            j = first + draw % np.uint64(i + 1)
            ids[first + i], ids[j] = ids[j], ids[first + i]
        first = stop


@numba.njit(cache=True, parallel=True, nogil=True)
def _rank_rows(value_key, gene_ids, indptr, cell_ordinals, seed, keep_gene, top_k, out_indptr, out):
    for row in numba.prange(indptr.shape[0] - 1):
        start, stop = indptr[row], indptr[row + 1]
        keys = np.empty(stop - start, np.uint32)
        ids = np.empty(stop - start, np.int32)
        n = 0
        for j in range(start, stop):
            if value_key[j] != 0 and keep_gene[gene_ids[j]]:
                keys[n] = value_key[j]
                ids[n] = gene_ids[j]
                n += 1
        keys, ids = _radix_sort_descending(keys[:n], ids[:n])
        _shuffle_ties(keys, ids, _mix64(seed + _GOLDEN * (cell_ordinals[row] + np.uint64(1))))
        first = out_indptr[row]
        for j in range(min(n, top_k)):
            out[first + j] = ids[j]


@numba.njit(cache=True, parallel=True, nogil=True)
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


@numba.njit(cache=True, parallel=True, nogil=True)
def _sentence_bytes(gene_ids, indptr, symbol_lengths, row_bytes):
    for row in numba.prange(indptr.shape[0] - 1):
        start, stop = indptr[row], indptr[row + 1]
        total = max(stop - start - 1, 0)  # one space between words
        for j in range(start, stop):
            total += symbol_lengths[gene_ids[j]]
        row_bytes[row] = total


@numba.njit(cache=True, parallel=True, nogil=True)
def _fill_text(gene_ids, indptr, symbol_bytes, symbol_offsets, text_offsets, text):
    space = np.uint8(32)
    for row in numba.prange(indptr.shape[0] - 1):
        pos = text_offsets[row]
        for j in range(indptr[row], indptr[row + 1]):
            if j > indptr[row]:
                text[pos] = space
                pos += 1
            first, stop = symbol_offsets[gene_ids[j]], symbol_offsets[gene_ids[j] + 1]
            text[pos : pos + stop - first] = symbol_bytes[first:stop]
            pos += stop - first


@numba.njit(cache=True, parallel=True, nogil=True)
def count_expressed(values, indptr) -> np.ndarray:
    """[rows] number of stored values > 0 in each CSR row."""
    counts = np.empty(indptr.shape[0] - 1, np.int64)
    for row in numba.prange(indptr.shape[0] - 1):
        n = 0
        for j in range(indptr[row], indptr[row + 1]):
            if values[j] > 0:
                n += 1
        counts[row] = n
    return counts


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
        row_bytes = np.empty(len(indptr) - 1, np.int64)
        _sentence_bytes(gene_ids, indptr, self._lengths, row_bytes)
        offsets = np.zeros(len(indptr), np.int64)
        np.cumsum(row_bytes, out=offsets[1:])
        text = np.empty(offsets[-1], np.uint8)
        _fill_text(gene_ids, indptr, self._bytes, self._offsets, offsets, text)
        return text, offsets
