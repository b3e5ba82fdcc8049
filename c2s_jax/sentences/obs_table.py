"""Cell names and obs columns, read only for the rows of the current chunk.

An atlas's obs table can be larger than the chunk being ranked (tens of millions of cell
names), so on disk only the requested columns are touched, and only the row range of a
chunk is read from each.
"""

import anndata.io
import h5py
import numpy as np
import pandas as pd


class ObsTable:
    """Row-range access to an obs table held in memory (a DataFrame)."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    @property
    def columns(self) -> list[str]:
        """Names of the obs columns."""
        return [str(c) for c in self._frame.columns]

    def __len__(self) -> int:
        return len(self._frame)

    def names(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows)] cell names (str) of the given absolute rows."""
        return np.asarray(self._frame.index[rows]).astype(str)

    def frame(self, columns: list[str], rows: np.ndarray) -> pd.DataFrame:
        """The given columns at the given absolute rows (index reset)."""
        return self._frame[columns].iloc[rows].reset_index(drop=True)


class DiskObsTable(ObsTable):
    """Row-range access to the obs group of an AnnData on disk (an h5py group of an .h5ad
    file, or a zarr group)."""

    def __init__(self, group):
        self._group = group
        self._index = group[group.attrs["_index"]]
        self._categories: dict[str, pd.Index] = {}
        self._whole_columns: dict[str, pd.Series] = {}

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self._group.attrs.get("column-order", [])]

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def names(self, rows: np.ndarray) -> np.ndarray:
        return _take(self._index, rows, text=True)

    def frame(self, columns: list[str], rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({c: self._column(c, rows) for c in columns})

    def _column(self, name: str, rows: np.ndarray) -> np.ndarray | pd.Categorical:
        element = self._group[name]
        encoding = element.attrs.get("encoding-type", "")
        if not hasattr(element, "keys") and encoding in ("array", "string-array"):
            return _take(element, rows, text=encoding == "string-array")
        if encoding == "categorical":
            if name not in self._categories:
                self._categories[name] = pd.Index(anndata.io.read_elem(element["categories"]))
            codes = _take(element["codes"], rows, text=False)
            return pd.Categorical.from_codes(codes, self._categories[name])
        # Nullable and other rare encodings: read the column once, then index it.
        if name not in self._whole_columns:
            self._whole_columns[name] = pd.Series(anndata.io.read_elem(element))
        return self._whole_columns[name].to_numpy()[rows]


def _strings(array, first: int, stop: int) -> np.ndarray:
    """array[first:stop] as str: h5py stores bytes (decoded by .asstr()), zarr objects."""
    if isinstance(array, h5py.Dataset):
        return np.asarray(array.asstr()[first:stop], dtype=str)
    # zarr gives numpy's variable-width StringDType, which casts to str through object.
    return np.asarray(array[first:stop]).astype(object).astype(str)


# Rows are read one by one (an HDF5 point selection) when fewer than 1 in this many of
# the rows they span are wanted; otherwise the span is read and indexed.
SPARSE_TAKE_FRACTION = 8


def _take(array, rows: np.ndarray, text: bool) -> np.ndarray:
    """array[rows] (rows sorted and distinct), as str when `text`, reading only those rows
    when they are sparse in an HDF5 dataset."""
    first, stop = _span(rows)
    if isinstance(array, h5py.Dataset) and len(rows) * SPARSE_TAKE_FRACTION < stop - first:
        values = (array.asstr() if text else array)[np.asarray(rows, np.int64)]
        return np.asarray(values, dtype=str) if text else np.asarray(values)
    values = _strings(array, first, stop) if text else np.asarray(array[first:stop])
    return values[rows - first]


def _span(rows: np.ndarray) -> tuple[int, int]:
    if len(rows) == 0:
        return 0, 0
    return int(rows.min()), int(rows.max()) + 1


class ArraysObsTable(ObsTable):
    """Row-range access to cell names and columns kept as separate 1-D arrays on disk (a
    10x file's barcodes, a loom file's col_attrs): only a block's rows are read."""

    def __init__(self, names, columns: dict):
        self._names = names
        self._arrays = columns

    @property
    def columns(self) -> list[str]:
        return list(self._arrays)

    def __len__(self) -> int:
        return int(self._names.shape[0])

    def names(self, rows: np.ndarray) -> np.ndarray:
        return _take(self._names, rows, text=True)

    def frame(self, columns: list[str], rows: np.ndarray) -> pd.DataFrame:
        frame = {}
        for name in columns:
            array = self._arrays[name]
            frame[name] = _take(array, rows, text=array.dtype.kind in "OSU")
        return pd.DataFrame(frame)
