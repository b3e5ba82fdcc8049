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


# The kernels index with unsigned integers on purpose: numba checks every signed index for
# negative (wrap-around) values, which made these byte- and key-shuffling loops ~5x slower.
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@numba.njit(cache=True, inline="always")
def _radix_sort_descending(keys, ids, n):
    """Stable sort of ids[:n] by descending keys[:n] (uint32); returns (keys, ids) sorted."""
    for j in range(n):
        keys[j] = np.uint32(0xFFFFFFFF) - keys[j]  # ascending order of this = descending keys
    spare_keys = np.empty_like(keys)
    spare_ids = np.empty_like(ids)
    histogram = np.empty(_DIGIT_MASK + 1, np.uint64)
    mask = np.uint32(_DIGIT_MASK)
    for shift in range(0, 32, _DIGIT_BITS):
        shift_u = np.uint32(shift)
        histogram[:] = 0
        j = _ZERO
        while j < n:
            histogram[(keys[j] >> shift_u) & mask] += _ONE
            j += _ONE
        if histogram.max() == n:
            continue  # every key has this digit: the pass would not move anything
        start = _ZERO
        for digit in range(_DIGIT_MASK + 1):
            count = histogram[digit]
            histogram[digit] = start
            start += count
        j = _ZERO
        while j < n:
            digit = (keys[j] >> shift_u) & mask
            slot = histogram[digit]
            histogram[digit] = slot + _ONE
            spare_keys[slot] = keys[j]
            spare_ids[slot] = ids[j]
            j += _ONE
        keys, spare_keys = spare_keys, keys
        ids, spare_ids = spare_ids, ids
    return keys, ids


@numba.njit(cache=True, inline="always")
def _shuffle_ties(keys, ids, n, cell_salt):
    """Fisher-Yates shuffle of each run of equal keys, from hashed random numbers."""
    first = _ZERO
    while first < n:
        stop = first + _ONE
        while stop < n and keys[stop] == keys[first]:
            stop += _ONE
        i = stop - first - _ONE
        while i > _ZERO:
            draw = _mix64(cell_salt ^ (first * _GOLDEN + i))
            j = first + draw % (i + _ONE)
            ids[first + i], ids[j] = ids[j], ids[first + i]
            i -= _ONE
        first = stop


@numba.njit(cache=True, parallel=True, nogil=True)
def _rank_rows(value_key, gene_ids, indptr, cell_ordinals, seed, keep_gene, top_k, out_indptr, out):
    for row in numba.prange(indptr.shape[0] - 1):
        start, stop = np.uint64(indptr[row]), np.uint64(indptr[row + 1])
        keys = np.empty(stop - start, np.uint32)
        ids = np.empty(stop - start, np.int32)
        n = _ZERO
        j = start
        while j < stop:
            if value_key[j] != 0 and keep_gene[np.uint64(gene_ids[j])]:
                keys[n] = value_key[j]
                ids[n] = gene_ids[j]
                n += _ONE
            j += _ONE
        keys, ids = _radix_sort_descending(keys, ids, n)
        _shuffle_ties(keys, ids, n, _mix64(seed + _GOLDEN * (cell_ordinals[row] + _ONE)))
        first = np.uint64(out_indptr[row])
        kept = min(n, np.uint64(top_k))
        j = _ZERO
        while j < kept:
            out[first + j] = ids[j]
            j += _ONE


@numba.njit(cache=True, parallel=True, nogil=True)
def _count_kept(value_key, gene_ids, indptr, keep_gene, top_k, counts):
    for row in numba.prange(indptr.shape[0] - 1):
        n = 0
        j, stop = np.uint64(indptr[row]), np.uint64(indptr[row + 1])
        while j < stop:
            if value_key[j] != 0 and keep_gene[np.uint64(gene_ids[j])]:
                n += 1
            j += _ONE
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
        j, stop = np.uint64(indptr[row]), np.uint64(indptr[row + 1])
        total = max(np.int64(stop - j) - 1, 0)  # one space between words
        while j < stop:
            total += symbol_lengths[np.uint64(gene_ids[j])]
            j += _ONE
        row_bytes[row] = total


@numba.njit(cache=True, parallel=True, nogil=True)
def _fill_text(gene_ids, indptr, symbol_bytes, symbol_offsets, text_offsets, text):
    space = np.uint8(32)
    for row in numba.prange(indptr.shape[0] - 1):
        pos = np.uint64(text_offsets[row])
        j, stop = np.uint64(indptr[row]), np.uint64(indptr[row + 1])
        while j < stop:
            if j > np.uint64(indptr[row]):
                text[pos] = space
                pos += _ONE
            gene = np.uint64(gene_ids[j])
            byte, end = np.uint64(symbol_offsets[gene]), np.uint64(symbol_offsets[gene + _ONE])
            while byte < end:
                text[pos] = symbol_bytes[byte]
                pos += _ONE
                byte += _ONE
            j += _ONE


@numba.njit(cache=True, parallel=True, nogil=True)
def count_expressed(values, indptr) -> np.ndarray:
    """[rows] number of stored values > 0 in each CSR row."""
    counts = np.empty(indptr.shape[0] - 1, np.int64)
    for row in numba.prange(indptr.shape[0] - 1):
        n = 0
        j, stop = np.uint64(indptr[row]), np.uint64(indptr[row + 1])
        while j < stop:
            if values[j] > 0:
                n += 1
            j += _ONE
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
