"""One expression matrix of an AnnData, read in row chunks with its obs and var tables.

The matrix is X, a named layer, or .raw.X, of an in-memory AnnData or of an .h5ad on disk.
On disk the file is opened read-only and only the rows of one chunk are ever in memory, so
an atlas-sized file streams with memory bounded by the chunk.
"""

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import anndata
import anndata.io
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.data.obs_table import DiskObsTable, ObsTable
from c2s_jax.errors import InputError


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


class ExpressionSource:
    """Row-chunked access to one expression matrix [cells, genes] and its obs/var tables.

    Args:
      data: an AnnData in memory, or the path of an .h5ad file (opened backed, read-only).
      choice: which matrix to read.
    """

    def __init__(self, data: anndata.AnnData | str | os.PathLike, choice: MatrixChoice):
        self.choice = choice
        self._file: h5py.File | None = None
        if isinstance(data, anndata.AnnData):
            self.name = "AnnData"
            self._matrix, self.var = _in_memory_matrix(data, choice)
            self.obs = ObsTable(data.obs)
        else:
            path = Path(data)
            self.name = str(path)
            self._file = _open_h5ad(path)
            self._matrix, self.var = _on_disk_matrix(self._file, path, choice)
            if "obs" not in self._file:
                raise InputError(f"{path}: no 'obs' table; is this an AnnData .h5ad file?")
            self.obs = DiskObsTable(self._file["obs"])
        self.n_cells, self.n_genes = (int(n) for n in self._matrix.shape)
        if len(self.obs) != self.n_cells or len(self.var) != self.n_genes:
            raise InputError(
                f"{self.name}: {choice.field} has shape {self._matrix.shape} but obs has "
                f"{len(self.obs)} rows and var has {len(self.var)} rows; the file is inconsistent"
            )

    @property
    def where(self) -> str:
        """'<file>: <field>' for messages."""
        return f"{self.name}: {self.choice.field}"

    def close(self) -> None:
        """Closes the backing file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None

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

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, sp.csr_matrix]]:
        """Yields (first_row, csr [rows, genes]) for consecutive row blocks.

        Values are checked as they stream: negative, NaN or infinite entries raise an error
        naming the file, the field and the first offending cell.
        """
        if chunk_size < 1:
            raise InputError(f"chunk_size must be a positive number of cells, got {chunk_size}")
        for start in range(0, self.n_cells, chunk_size):
            stop = min(start + chunk_size, self.n_cells)
            block = self._matrix[start:stop]
            block = block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
            block.sort_indices()
            self._check_values(block, start)
            yield start, block

    def _check_values(self, block: sp.csr_matrix, start: int) -> None:
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
                cell = self.obs.names(np.array([start + first]))[0]
                raise InputError(f"{self.where} has {what} (first in cell {cell!r}): {hint}")


def read_anndata(path: str | os.PathLike, backed: str | None = None) -> anndata.AnnData:
    """`anndata.read_h5ad(path, backed)`, with a missing file, or one that is not HDF5,
    told in one line (InputError) instead of h5py's error."""
    path = Path(path)
    _open_h5ad(path).close()
    return anndata.read_h5ad(path, backed=backed)


def _open_h5ad(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not an .h5ad (HDF5) file ({err})") from None


def _read_table(file: h5py.File, key: str, path: Path) -> pd.DataFrame:
    if key not in file:
        raise InputError(f"{path}: no '{key}' table; is this an AnnData .h5ad file?")
    return anndata.io.read_elem(file[key])


def _on_disk_matrix(file: h5py.File, path: Path, choice: MatrixChoice):
    if choice.raw:
        if "raw" not in file:
            raise InputError(f"{path}: has no .raw; drop --raw or choose a layer")
        element, var = file["raw/X"], _read_table(file, "raw/var", path)
    elif choice.layer:
        layers = file.get("layers", {})
        if choice.layer not in layers:
            raise InputError(
                f"{path}: no layer '{choice.layer}' (available: {', '.join(layers) or 'none'})"
            )
        element, var = layers[choice.layer], _read_table(file, "var", path)
    else:
        if "X" not in file:
            raise InputError(f"{path}: no X matrix; is this an AnnData .h5ad file?")
        element, var = file["X"], _read_table(file, "var", path)
    if isinstance(element, h5py.Dataset):
        return element, var
    encoding = element.attrs.get("encoding-type", "")
    if encoding == "csc_matrix":
        raise InputError(
            f"{path}: {choice.field} is stored column-major (CSC), which cannot be streamed by "
            "cells; rewrite it as CSR (adata.X = adata.X.tocsr(); adata.write_h5ad(...))"
        )
    return anndata.io.sparse_dataset(element), var


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
