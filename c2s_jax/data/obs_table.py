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
    """Row-range access to the obs group of an open .h5ad file."""

    def __init__(self, group: h5py.Group):
        self._group = group
        self._index = group[group.attrs["_index"]]
        self._categories: dict[str, pd.Index] = {}
        self._whole_columns: dict[str, pd.Series] = {}

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self._group.attrs.get("column-order", [])]

    def __len__(self) -> int:
        return len(self._index)

    def names(self, rows: np.ndarray) -> np.ndarray:
        first, stop = _span(rows)
        return np.asarray(self._index.asstr()[first:stop], dtype=str)[rows - first]

    def frame(self, columns: list[str], rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({c: self._column(c, rows) for c in columns})

    def _column(self, name: str, rows: np.ndarray) -> np.ndarray | pd.Categorical:
        element = self._group[name]
        first, stop = _span(rows)
        encoding = element.attrs.get("encoding-type", "")
        if isinstance(element, h5py.Dataset) and encoding in ("array", "string-array"):
            values = element.asstr() if encoding == "string-array" else element
            return np.asarray(values[first:stop])[rows - first]
        if encoding == "categorical":
            if name not in self._categories:
                self._categories[name] = pd.Index(anndata.io.read_elem(element["categories"]))
            codes = np.asarray(element["codes"][first:stop])[rows - first]
            return pd.Categorical.from_codes(codes, self._categories[name])
        # Nullable and other rare encodings: read the column once, then index it.
        if name not in self._whole_columns:
            self._whole_columns[name] = pd.Series(anndata.io.read_elem(element))
        return self._whole_columns[name].to_numpy()[rows]


def _span(rows: np.ndarray) -> tuple[int, int]:
    if len(rows) == 0:
        return 0, 0
    return int(rows.min()), int(rows.max()) + 1
