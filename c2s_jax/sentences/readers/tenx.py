"""10x Genomics feature-barcode matrices: the .h5 of Cell Ranger 3+ (``/matrix``) and 2
(one group per genome), and ``matrix.mtx(.gz)`` folders with their features (or genes) and
barcodes. Genes and cells follow scanpy's ``read_10x_h5`` / ``read_10x_mtx``: gene
symbols name the genes, ``gene_ids`` (and ``feature_types``) are var columns, and only
"Gene Expression" features are kept.

10x stores each cell's counts together (column-major over genes x cells), so a block of
cells is one contiguous slice: read in blocks, memory follows the block. scanpy's readers
load the whole matrix, which is why these are ours.
"""

import gzip
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.obs_table import ArraysObsTable, ObsTable
from c2s_jax.sentences.readers.base import MatrixReader

GENE_EXPRESSION = "Gene Expression"


class TenxH5(MatrixReader):
    """The gene-expression matrix of a Cell Ranger .h5 file (v2 or v3), cells x genes."""

    def __init__(self, path: Path):
        self.name, self.field = str(path), "matrix"
        self._file = file = h5py.File(path, "r")
        if "matrix" in file:
            group = file["matrix"]
            features = group["features"]
            ids, symbols = _text(features["id"]), _text(features["name"])
            kinds = _text(features["feature_type"])
            self.var = pd.DataFrame(
                {"gene_ids": ids, "feature_types": kinds}, index=pd.Index(symbols)
            )
            if "genome" in features:
                self.var["genome"] = _text(features["genome"])
            keep = kinds == GENE_EXPRESSION
        else:
            genomes = list(file)
            if len(genomes) != 1:
                raise InputError(f"{path}: holds several genomes {genomes}; split the file")
            group = file[genomes[0]]
            self.var = pd.DataFrame(
                {"gene_ids": _text(group["genes"])}, index=pd.Index(_text(group["gene_names"]))
            )
            keep = np.ones(len(self.var), bool)
        self._data, self._indices = group["data"], group["indices"]
        self._indptr = np.asarray(group["indptr"][:], np.int64)
        n_features, n_cells = (int(n) for n in group["shape"][:])
        self._features = n_features
        self._kept = None if keep.all() else np.flatnonzero(keep)
        if self._kept is not None:
            self.var = self.var.iloc[self._kept]
        self.obs = ArraysObsTable(group["barcodes"], {})
        self.shape = (n_cells, len(self.var))

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        first, last = int(self._indptr[start]), int(self._indptr[stop])
        block = sp.csr_matrix(
            (
                np.asarray(self._data[first:last]),
                np.asarray(self._indices[first:last]),
                self._indptr[start : stop + 1] - first,
            ),
            shape=(stop - start, self._features),
        )
        return block if self._kept is None else block[:, self._kept]

    def close(self) -> None:
        self._file.close()


class TenxMtx(MatrixReader):
    """A Cell Ranger matrix.mtx(.gz) folder, cells x genes, read in one forward pass per
    sweep when its entries are ordered by cell (as Cell Ranger writes them); a file in
    another order is read into memory once, with a warning."""

    def __init__(self, folder: Path):
        self.name, self.field = str(folder), "matrix.mtx"
        self._matrix_path = _first_existing(folder, ("matrix.mtx.gz", "matrix.mtx"))
        barcodes = _first_existing(folder, ("barcodes.tsv.gz", "barcodes.tsv"))
        features = _first_existing(folder, ("features.tsv.gz", "genes.tsv.gz", "genes.tsv"))
        table = pd.read_csv(features, sep="\t", header=None, dtype=str)
        if table.shape[1] < 2:
            raise InputError(f"{features}: needs gene ids and symbols (2 columns)")
        self.var = pd.DataFrame({"gene_ids": table[0].to_numpy()}, index=pd.Index(table[1]))
        keep = np.ones(len(table), bool)
        if table.shape[1] >= 3:
            self.var["feature_types"] = table[2].to_numpy()
            keep = table[2].to_numpy() == GENE_EXPRESSION
        names = pd.read_csv(barcodes, sep="\t", header=None, dtype=str)[0].to_numpy()
        self.obs: ObsTable = ObsTable(pd.DataFrame(index=pd.Index(names)))
        n_genes, n_cells, self._nonzeros = self._header()
        if n_genes != len(table) or n_cells != len(names):
            raise InputError(
                f"{self._matrix_path}: is {n_genes} genes x {n_cells} cells, but {features.name} "
                f"lists {len(table)} genes and {barcodes.name} {len(names)} barcodes"
            )
        self._features = n_genes
        self._kept = None if keep.all() else np.flatnonzero(keep)
        if self._kept is not None:
            self.var = self.var.iloc[self._kept]
        self.shape = (n_cells, len(self.var))
        self._stream = None
        self._in_memory: sp.csr_matrix | None = None

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        block = self._read(start, stop)
        return block if self._kept is None else block[:, self._kept]

    def close(self) -> None:
        self._stream = None

    def _open(self):
        return (
            gzip.open(self._matrix_path, "rt")
            if self._matrix_path.suffix == ".gz"
            else open(self._matrix_path)
        )

    def _header(self) -> tuple[int, int, int]:
        with self._open() as stream:
            line = stream.readline()
            if not line.startswith("%%MatrixMarket matrix coordinate"):
                raise InputError(f"{self._matrix_path}: not a MatrixMarket coordinate matrix")
            while line.startswith("%"):
                line = stream.readline()
            rows, cols, nonzeros = (int(x) for x in line.split())
        return rows, cols, nonzeros

    def _entries(self):
        """Blocks of (gene, cell, value), 0-based, in file order."""
        with self._open() as stream:
            line = stream.readline()
            while line.startswith("%"):
                line = stream.readline()
            for chunk in pd.read_csv(
                stream, sep=" ", header=None, names=("gene", "cell", "value"), chunksize=1 << 20
            ):
                yield (
                    chunk["gene"].to_numpy(np.int64) - 1,
                    chunk["cell"].to_numpy(np.int64) - 1,
                    chunk["value"].to_numpy(np.float32),
                )

    def _read(self, start: int, stop: int) -> sp.csr_matrix:
        if self._in_memory is not None:
            return self._in_memory[start:stop]
        if self._stream is None or start < self._stream.position:
            self._stream = _CellOrderedStream(self._entries())
        block = self._stream.take(start, stop, self._features)
        if block is None:  # not ordered by cell: read it whole, once
            import warnings

            warnings.warn(
                f"{self._matrix_path}: entries are not ordered by cell, so the matrix is read "
                "into memory whole",
                stacklevel=2,
            )
            genes, cells, values = (np.concatenate(x) for x in zip(*self._entries(), strict=True))
            self._in_memory = sp.csr_matrix(
                (values, (cells, genes)), shape=(self.shape[0], self._features)
            )
            self._stream = None
            return self._in_memory[start:stop]
        return block


class _CellOrderedStream:
    """Entries of an mtx file consumed in cell order, a block of cells at a time."""

    def __init__(self, entries):
        self._entries = entries
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.position = 0  # cells before this one are consumed
        self._last_cell = -1

    def take(self, start: int, stop: int, n_genes: int) -> sp.csr_matrix | None:
        """Cells start:stop as CSR, or None when the file turns out not to be ordered."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        parts = [empty]
        while True:
            if self._pending:
                genes, cells, values = self._pending.pop()
            else:
                try:
                    genes, cells, values = next(self._entries)
                except StopIteration:
                    break
                if len(cells) and (cells[0] < self._last_cell or np.any(np.diff(cells) < 0)):
                    return None
                if len(cells):
                    self._last_cell = int(cells[-1])
            before = cells < stop
            parts.append((genes[before], cells[before], values[before]))
            if not before.all():
                self._pending.append((genes[~before], cells[~before], values[~before]))
                break
        self.position = stop
        genes, cells, values = (np.concatenate(x) for x in zip(*parts, strict=True))
        inside = cells >= start
        return sp.csr_matrix(
            (values[inside], (cells[inside] - start, genes[inside])), shape=(stop - start, n_genes)
        )


def _text(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(dataset.asstr()[:], dtype=str)


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise InputError(f"{folder}: a 10x matrix folder needs {' or '.join(names)}; it is missing")
