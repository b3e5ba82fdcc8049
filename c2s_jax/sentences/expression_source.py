"""One expression matrix, read in row chunks with its obs and var tables.

The matrix is X, a named layer, or .raw.X, of an in-memory AnnData, or of any input on
disk that `c2s_jax.sentences.readers` reads (h5ad, zarr, 10x h5 and mtx, loom). On disk only
the rows of one chunk are ever in memory, so an atlas-sized input streams with memory
bounded by the chunk.
"""

import dataclasses
import os
from collections.abc import Iterator

import anndata
import numpy as np
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.embedded import is_embedded, load_embedded
from c2s_jax.sentences.obs_table import ObsTable
from c2s_jax.sentences.readers import open_matrix
from c2s_jax.sentences.readers.base import MatrixReader
from c2s_jax.sentences.readers.detect import H5AD, detect_format


@dataclasses.dataclass(frozen=True)
class MatrixChoice:
    """Which matrix holds the expression: X (default), `layers[layer]`, or `.raw.X`."""

    layer: str | None = None
    raw: bool = False

    def __post_init__(self):
        if self.layer is not None and self.raw:
            raise InputError("choose either a layer (--layer NAME) or .raw (--raw), not both")

    @property
    def field(self) -> str:
        """The field's name as users write it, for messages: 'X', 'layers/counts', 'raw/X'."""
        if self.raw:
            return "raw/X"
        return f"layers/{self.layer}" if self.layer else "X"


# Wanted cells are read one by one when fewer than 1 in this many of the cells they span
# are wanted (a cell read alone costs about as much as this many read in a run).
SPARSE_PICK_FRACTION = 8


class ExpressionSource:
    """Row-chunked access to one expression matrix [cells, genes] and its obs/var tables.

    Args:
      data: an AnnData in memory, or the path of an input on disk (opened read-only).
      choice: which matrix to read.
    """

    def __init__(self, data: anndata.AnnData | str | os.PathLike, choice: MatrixChoice):
        self.choice = choice
        self._reader: MatrixReader | None = None
        name = "AnnData"
        if not isinstance(data, anndata.AnnData) and is_embedded(data):
            name, data = str(data), load_embedded(str(data))
        if isinstance(data, anndata.AnnData):
            self.name = name
            matrix, self.var = _in_memory_matrix(data, choice)
            self.obs = ObsTable(data.obs)
            shape = matrix.shape
            self._rows = lambda start, stop: matrix[start:stop]
            self._pick = lambda rows: matrix[rows]
        else:
            self._reader = reader = open_matrix(data, choice.field)
            self.name, self.var, self.obs, shape = reader.name, reader.var, reader.obs, reader.shape
            self._rows = reader.rows
            self._pick = reader.pick_rows
        self.n_cells, self.n_genes = (int(n) for n in shape)
        if len(self.obs) != self.n_cells or len(self.var) != self.n_genes:
            self.close()
            raise InputError(
                f"{self.name}: {choice.field} has shape {tuple(shape)} but obs has "
                f"{len(self.obs)} rows and var has {len(self.var)} rows; the file is inconsistent"
            )

    @property
    def where(self) -> str:
        """'<file>: <field>' for messages."""
        return f"{self.name}: {self.choice.field}"

    def close(self) -> None:
        """Closes the backing input, if any."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "ExpressionSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_obs_columns(self, columns: list[str]) -> None:
        """Raises an error listing the known columns if any of `columns` is not in obs."""
        missing = [c for c in columns if c not in self.obs.columns]
        if missing:
            raise InputError(
                f"{self.name}: obs has no column {missing} (available: "
                f"{', '.join(self.obs.columns) or 'none'})"
            )

    def chunks(
        self, chunk_size: int, only_rows: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """Yields (rows [n] int64, csr [n, genes]): blocks of the input's cells in order.

        Values are checked as they stream: negative, NaN or infinite entries raise an error
        naming the file, the field and the first offending cell.

        Args:
          chunk_size: cells per block.
          only_rows: sorted, distinct rows that are wanted: blocks hold just those, up to
            `chunk_size` at a time, and cells far apart are read one by one, so the cost
            follows the cells wanted, not the input.
        """
        if chunk_size < 1:
            raise InputError(f"chunk_size must be a positive number of cells, got {chunk_size}")
        if only_rows is None:
            blocks = (
                np.arange(start, min(start + chunk_size, self.n_cells), dtype=np.int64)
                for start in range(0, self.n_cells, chunk_size)
            )
        else:
            only_rows = np.asarray(only_rows, np.int64)
            blocks = (only_rows[i : i + chunk_size] for i in range(0, len(only_rows), chunk_size))
        for rows in blocks:
            first, stop = int(rows[0]), int(rows[-1]) + 1
            if len(rows) == stop - first:
                block = self._rows(first, stop)
            elif len(rows) * SPARSE_PICK_FRACTION < stop - first:
                block = self._pick(rows)
            else:
                block = self._rows(first, stop)
                block = (block.tocsr() if sp.issparse(block) else sp.csr_matrix(block))[
                    rows - first
                ]
            block = block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
            block.sort_indices()
            self._check_values(block, rows)
            yield rows, block

    def _check_values(self, block: sp.csr_matrix, rows: np.ndarray) -> None:
        if block.nnz == 0:
            return
        low, high = block.data.min(), block.data.max()
        if low >= 0 and np.isfinite(high):  # NaN fails both comparisons
            return
        bad_finite = ~np.isfinite(block.data)
        bad_negative = block.data < 0
        for bad, what, hint in (
            (bad_finite, "NaN or infinite values", "remove or impute them"),
            (
                bad_negative,
                "negative values",
                "it looks scaled or centered; pass raw counts (--layer NAME or --raw)",
            ),
        ):
            if bad.any():
                first = int(np.searchsorted(block.indptr, np.flatnonzero(bad)[0], side="right")) - 1
                cell = self.obs.names(rows[first : first + 1])[0]
                raise InputError(f"{self.where} has {what} (first in cell {cell!r}): {hint}")


def read_anndata(path: str | os.PathLike, backed: str | None = None) -> anndata.AnnData:
    """`anndata.read_h5ad(path, backed)`, with a missing file, or one that is not an .h5ad,
    told in one line (InputError) instead of h5py's error. ``embedded:NAME`` loads a
    packaged dataset (in memory; `backed` does not apply)."""
    if is_embedded(path):
        return load_embedded(str(path))
    kind = detect_format(path)
    if kind != H5AD:
        raise InputError(f"{path}: a {kind} input, where an AnnData .h5ad file is needed")
    return anndata.read_h5ad(path, backed=backed)


def _in_memory_matrix(adata: anndata.AnnData, choice: MatrixChoice):
    if choice.raw:
        if adata.raw is None:
            raise InputError("AnnData has no .raw; drop raw=True or choose a layer")
        matrix, var = adata.raw.X, adata.raw.var
    elif choice.layer:
        if choice.layer not in adata.layers:
            raise InputError(
                f"AnnData has no layer '{choice.layer}' "
                f"(available: {', '.join(adata.layers.keys()) or 'none'})"
            )
        matrix, var = adata.layers[choice.layer], adata.var
    else:
        matrix, var = adata.X, adata.var
    if matrix is None:
        raise InputError(f"AnnData: {choice.field} is empty")
    if sp.issparse(matrix) and not sp.isspmatrix_csr(matrix):
        matrix = sp.csr_matrix(matrix)
    return matrix, var
