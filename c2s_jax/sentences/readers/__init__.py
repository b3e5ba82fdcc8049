"""Every input format a scanpy user holds, read as one expression matrix in blocks of cells.

`open_matrix` recognises the format by content (`detect.py`) and returns a
`base.MatrixReader`: AnnData .h5ad of every layout anndata reads and .zarr stores, local
or ``gs://`` (`anndata_store.py`); 10x Genomics .h5 (Cell Ranger 2 and 3+) and
matrix.mtx folders (`tenx.py`); .loom files (`loom.py`).
"""

import os
from pathlib import Path

from c2s_jax.errors import InputError
from c2s_jax.sentences.readers.base import MatrixReader
from c2s_jax.sentences.readers.detect import H5AD, LOOM, TENX_H5, TENX_MTX, ZARR, detect_format


def open_matrix(path: str | os.PathLike, field: str) -> MatrixReader:
    """The matrix `field` ('X', 'layers/NAME' or 'raw/X') of the input at `path`.

    Formats without layers or .raw (10x) take only 'X'; a loom file's layers are its
    ``/layers``.

    Raises:
      InputError: the input is missing, of no accepted format, or lacks what is asked.
    """
    kind = detect_format(path)
    if kind in (H5AD, ZARR):
        from c2s_jax.sentences.readers.anndata_store import AnnDataStore

        return AnnDataStore(path, field, zarr_store=kind == ZARR)
    if field == "raw/X" or (field != "X" and kind != LOOM):
        raise InputError(f"{path}: a {kind} input has one matrix; drop --layer/--raw")
    if kind == LOOM:
        from c2s_jax.sentences.readers.loom import LoomFile

        return LoomFile(Path(path), field.removeprefix("layers/") if field != "X" else None)
    from c2s_jax.sentences.readers.tenx import TenxH5, TenxMtx

    assert kind in (TENX_H5, TENX_MTX), kind
    return TenxH5(Path(path)) if kind == TENX_H5 else TenxMtx(Path(path))
