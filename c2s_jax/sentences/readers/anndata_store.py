"""AnnData on disk: .h5ad files (every layout anndata reads) and .zarr stores (local or in
an object store), read with anndata's own element readers.

Files in anndata's current layout (0.7 on) are read element by element: the matrix in row
blocks by slicing its data/indices/indptr arrays (CSR; single cells too, so a pass that
wants a few cells reads only theirs) or array slices (dense), obs one block of rows at a
time. Files written before anndata 0.7 (obs and var as compound datasets, X
marked ``h5sparse_format``) are opened with ``anndata.read_h5ad(backed="r")``, which keeps
X on disk and reads their tables, small in such files, into memory.
"""

import os
from pathlib import Path

import anndata
import anndata.io
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.obs_table import DiskObsTable, ObsTable
from c2s_jax.sentences.readers.base import (
    MatrixReader,
    csc_rows,
    csr_pick,
    csr_rows,
    warn_column_major,
)


class AnnDataStore(MatrixReader):
    """X, a layer or .raw/X of an .h5ad file or a .zarr store.

    Args:
      path: the file or store (``gs://`` for a zarr store in a bucket).
      field: 'X', 'layers/NAME' or 'raw/X'.
      zarr_store: whether `path` is a zarr store rather than an HDF5 file.
    """

    def __init__(self, path: str | os.PathLike, field: str, zarr_store: bool):
        self.name, self.field = os.fspath(path), field
        self._file = None
        self._backed: anndata.AnnData | None = None
        self._pick = None
        if zarr_store:
            import zarr

            try:
                # Each element's own metadata, not the consolidated copy: a store whose
                # element was removed would otherwise read as all fill values (zeros).
                root = zarr.open_group(self.name, mode="r", use_consolidated=False)
            except (FileNotFoundError, ValueError, KeyError) as err:
                raise InputError(f"{self.name}: not a zarr store ({err})") from None
        else:
            root = self._file = h5py.File(Path(path), "r")
        if "obs" in root and not _is_group(root["obs"]):
            self._open_legacy(Path(path))
            return
        element, self.var = self._element(root)
        self.obs = self._obs(root)
        if _is_group(element):
            encoding = element.attrs.get("encoding-type", "")
            shape = tuple(int(n) for n in element.attrs["shape"])
            if encoding == "csc_matrix":
                warn_column_major(self.name, field, shape[0])
                parts = (element["data"], element["indices"], element["indptr"])
                self._rows = lambda a, b: csc_rows(*parts, shape, a, b)
            else:
                # The three arrays sliced directly: anndata's sparse_dataset reads the same
                # slices but checks its own version on every call.
                parts = (element["data"], element["indices"], element["indptr"])
                self._rows = lambda a, b: csr_rows(*parts, shape, a, b)
                self._pick = lambda rows: csr_pick(*parts, shape, rows)
        else:
            shape = tuple(int(n) for n in element.shape)
            self._rows = lambda a, b: sp.csr_matrix(np.asarray(element[a:b]))
        self.shape = shape

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        return self._rows(start, stop)

    def pick_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        if self._pick is None:
            return super().pick_rows(rows)
        return self._pick(rows)

    def close(self) -> None:
        if self._backed is not None:
            self._backed.file.close()
            self._backed = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _element(self, root):
        """(matrix element, var table) of the chosen field."""
        if self.field == "raw/X":
            if "raw" not in root:
                raise InputError(f"{self.name}: has no .raw; drop --raw or choose a layer")
            return root["raw"]["X"], self._table(root["raw"], "var")
        if self.field.startswith("layers/"):
            layer = self.field.removeprefix("layers/")
            layers = root.get("layers", {})
            if layer not in layers:
                raise InputError(
                    f"{self.name}: no layer '{layer}' (available: {', '.join(layers) or 'none'})"
                )
            return layers[layer], self._table(root, "var")
        if "X" not in root:
            raise InputError(f"{self.name}: no X matrix; is this an AnnData store?")
        return root["X"], self._table(root, "var")

    def _table(self, group, key: str) -> pd.DataFrame:
        if key not in group:
            raise InputError(f"{self.name}: no '{key}' table; is this an AnnData store?")
        return anndata.io.read_elem(group[key])

    def _obs(self, root) -> ObsTable:
        if "obs" not in root:
            raise InputError(f"{self.name}: no 'obs' table; is this an AnnData store?")
        return DiskObsTable(root["obs"])

    def _open_legacy(self, path: Path) -> None:
        self._file.close()
        self._file = None
        self._backed = adata = anndata.read_h5ad(path, backed="r")
        if self.field == "raw/X":
            if adata.raw is None:
                raise InputError(f"{self.name}: has no .raw; drop --raw or choose a layer")
            matrix, self.var = adata.raw.X, adata.raw.var
        elif self.field.startswith("layers/"):
            layer = self.field.removeprefix("layers/")
            if layer not in adata.layers:
                names = ", ".join(adata.layers.keys()) or "none"
                raise InputError(f"{self.name}: no layer '{layer}' (available: {names})")
            matrix, self.var = adata.layers[layer], adata.var
        else:
            matrix, self.var = adata.X, adata.var
        self.obs = ObsTable(adata.obs)
        self.shape = (adata.n_obs, int(matrix.shape[1]))

        def rows(start: int, stop: int) -> sp.csr_matrix:
            block = matrix[start:stop]
            return block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))

        self._rows = rows


def _is_group(element) -> bool:
    return hasattr(element, "keys")
