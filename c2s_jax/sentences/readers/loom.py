"""Loom files (loompy's HDF5 layout): ``/matrix`` [genes, cells], gene attributes in
``/row_attrs``, cell attributes in ``/col_attrs``, more matrices in ``/layers``. Cells are
columns, so a block of cells is a column slice of the (chunked, dense) matrix."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.obs_table import ArraysObsTable
from c2s_jax.sentences.readers.base import MatrixReader

# The attribute names anndata.io.read_loom uses by default (loompy's convention).
GENE_ATTRIBUTE, CELL_ATTRIBUTE = "Gene", "CellID"


class LoomFile(MatrixReader):
    """The matrix (or ``layers[NAME]``) of a .loom file, transposed to cells x genes.

    Args:
      path: the .loom file.
      layer: a layer name, or None for the main matrix.
    """

    def __init__(self, path: Path, layer: str | None):
        self.name = str(path)
        self._file = file = h5py.File(path, "r")
        if layer is not None:
            layers = file.get("layers", {})
            if layer not in layers:
                raise InputError(
                    f"{path}: no layer '{layer}' (available: {', '.join(layers) or 'none'})"
                )
            self._matrix, self.field = layers[layer], f"layers/{layer}"
        else:
            self._matrix, self.field = file["matrix"], "matrix"
        genes = file.get("row_attrs", {})
        if GENE_ATTRIBUTE not in genes:
            raise InputError(
                f"{path}: row_attrs has no '{GENE_ATTRIBUTE}' column of gene names (has: "
                f"{', '.join(genes) or 'none'}); write the loom with gene names"
            )
        self.var = pd.DataFrame(
            {k: _whole(genes[k]) for k in genes if k != GENE_ATTRIBUTE and genes[k].ndim == 1},
            index=pd.Index(_whole(genes[GENE_ATTRIBUTE])),
        )
        cells = file.get("col_attrs", {})
        n_genes, n_cells = (int(n) for n in self._matrix.shape)
        names = cells[CELL_ATTRIBUTE] if CELL_ATTRIBUTE in cells else np.arange(n_cells)
        columns = {k: cells[k] for k in cells if k != CELL_ATTRIBUTE and cells[k].ndim == 1}
        self.obs = ArraysObsTable(names, columns)
        self.shape = (n_cells, n_genes)

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        return sp.csr_matrix(np.asarray(self._matrix[:, start:stop]).T)

    def close(self) -> None:
        self._file.close()


def _whole(dataset: h5py.Dataset) -> np.ndarray:
    """A 1-D attribute column, strings decoded."""
    if dataset.dtype.kind in "OS":
        return np.asarray(dataset.asstr()[:], dtype=str)
    return dataset[:]
