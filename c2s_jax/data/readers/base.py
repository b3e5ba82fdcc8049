"""What every input format gives the cell-sentence stream: a matrix read in row (cell)
blocks, with its var table in memory and its obs table read per block."""

import abc
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.data.obs_table import ObsTable

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

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the file, if one is held open."""


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
