"""What every input format gives the cell-sentence stream: a matrix read in row (cell)
blocks, with its var table in memory and its obs table read per block."""

import abc
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.sentences.obs_table import ObsTable

# Nonzeros read at a time when a column-major matrix is scanned for a block of rows.
CSC_SCAN_NONZEROS = 1 << 22


class MatrixReader(abc.ABC):
    """One expression matrix [cells, genes] on disk, read a block of cells at a time.

    Attributes:
      name: the input's path, for messages.
      field: the matrix as users name it ('X', 'layers/counts', 'raw/X', 'matrix').
      shape: (cells, genes).
      var: the genes' table (index: the names the file gives genes).
      obs: the cells' table, read per block.
    """

    name: str
    field: str
    shape: tuple[int, int]
    var: pd.DataFrame
    obs: ObsTable

    @abc.abstractmethod
    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Cells `start:stop` as CSR [stop - start, genes]."""

    def pick_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """Cells `rows` (sorted, distinct) as CSR [len(rows), genes]. Formats that can
        read one cell without its neighbours override this; the default reads the span
        the rows cover."""
        if len(rows) == 0:
            return sp.csr_matrix((0, self.shape[1]))
        first = int(rows[0])
        return sp.csr_matrix(self.rows(first, int(rows[-1]) + 1))[rows - first]

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the file, if one is held open."""


def csr_rows(data, indices, indptr, shape: tuple[int, int], start: int, stop: int):
    """Rows `start:stop` of a row-major (CSR) matrix given as its three arrays (any
    sliceable arrays: h5py, zarr, numpy): one slice of each."""
    pointers = np.asarray(indptr[start : stop + 1], np.int64)
    first, last = int(pointers[0]), int(pointers[-1])
    return sp.csr_matrix(
        (np.asarray(data[first:last]), np.asarray(indices[first:last]), pointers - first),
        shape=(stop - start, shape[1]),
    )


def csr_pick(data, indices, indptr, shape: tuple[int, int], rows: np.ndarray):
    """Rows `rows` (sorted, distinct) of a row-major (CSR) matrix given as its three
    arrays, reading only their entries: a run of consecutive rows is one slice, so the
    cost follows the rows asked for, not the span they cover."""
    if len(rows) == 0:
        return sp.csr_matrix((0, shape[1]), dtype=np.asarray(data[:0]).dtype)
    base = int(rows[0])
    pointers = np.asarray(indptr[base : int(rows[-1]) + 2], np.int64)
    # Runs of consecutive rows: [run_start, run_stop) in row numbers.
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    run_starts = rows[np.concatenate([[0], breaks])]
    run_stops = rows[np.concatenate([breaks - 1, [len(rows) - 1]])] + 1
    values, columns = [], []
    for a, b in zip(run_starts.tolist(), run_stops.tolist(), strict=True):
        first, last = int(pointers[a - base]), int(pointers[b - base])
        values.append(np.asarray(data[first:last]))
        columns.append(np.asarray(indices[first:last]))
    lengths = pointers[rows - base + 1] - pointers[rows - base]
    indptr_out = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=indptr_out[1:])
    return sp.csr_matrix(
        (np.concatenate(values), np.concatenate(columns), indptr_out),
        shape=(len(rows), shape[1]),
    )


def csc_rows(data, indices, indptr, shape: tuple[int, int], start: int, stop: int):
    """Rows `start:stop` of a column-major (CSC) matrix given as its three arrays (any
    sliceable arrays: h5py, zarr, numpy), as CSR, reading `CSC_SCAN_NONZEROS` at a time.

    Every call reads the whole matrix once: memory stays bounded by the scan block, time
    grows with the number of row blocks.
    """
    pointers = np.asarray(indptr[:], np.int64)
    total = int(pointers[-1])
    kept_rows, kept_cols, kept_values = [], [], []
    for first in range(0, total, CSC_SCAN_NONZEROS):
        last = min(first + CSC_SCAN_NONZEROS, total)
        row_ids = np.asarray(indices[first:last], np.int64)
        hit = (row_ids >= start) & (row_ids < stop)
        if hit.any():
            positions = np.flatnonzero(hit) + first
            # The column of entry p is the last c with indptr[c] <= p.
            columns = np.searchsorted(pointers, positions, side="right") - 1
            kept_rows.append(row_ids[hit] - start)
            kept_cols.append(columns)
            kept_values.append(np.asarray(data[first:last])[hit])
    if not kept_rows:
        return sp.csr_matrix((stop - start, shape[1]), dtype=np.asarray(data[:0]).dtype)
    return sp.csr_matrix(
        (np.concatenate(kept_values), (np.concatenate(kept_rows), np.concatenate(kept_cols))),
        shape=(stop - start, shape[1]),
    )


def warn_column_major(name: str, field: str, n_cells: int) -> None:
    """Tells the user what a column-major matrix costs, once per input."""
    warnings.warn(
        f"{name}: {field} is stored column-major (CSC) with {n_cells} cells: each block of "
        "cells reads the whole matrix, one pass per block. Rewrite it row-major once "
        "(adata.X = adata.X.tocsr(); adata.write_h5ad(...)) or raise --chunk-size",
        stacklevel=2,
    )
