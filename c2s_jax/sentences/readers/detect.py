"""Which format an input is, recognised by its content (the extension alone can lie)."""

import os
from pathlib import Path

import h5py

from c2s_jax.errors import InputError

H5AD, ZARR, TENX_H5, TENX_MTX, LOOM = "h5ad", "zarr", "10x-h5", "10x-mtx", "loom"
ACCEPTED = (
    "an AnnData .h5ad or .zarr store, a 10x Genomics .h5 or matrix.mtx(.gz) folder, or a .loom file"
)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MTX_NAMES = ("matrix.mtx", "matrix.mtx.gz")


def detect_format(path: str | os.PathLike) -> str:
    """The format of the input at `path` (local, or a ``gs://`` zarr store).

    Raises:
      InputError: it is missing or none of the accepted formats.
    """
    text = os.fspath(path)
    if "://" in text:
        return ZARR  # object stores hold AnnData as zarr; the reader names what is missing
    local = Path(text)
    if not local.exists():
        raise InputError(f"{local}: no such file")
    if local.is_dir():
        if (local / "zarr.json").exists() or (local / ".zgroup").exists():
            return ZARR
        if any((local / name).exists() for name in _MTX_NAMES):
            return TENX_MTX
        raise InputError(
            f"{local}: a folder that is neither a zarr store nor a 10x matrix.mtx "
            f"folder; give {ACCEPTED}"
        )
    with open(local, "rb") as stream:
        if stream.read(8) != _HDF5_SIGNATURE:
            raise InputError(
                f"{local}: not an .h5ad (HDF5) file nor any input c2s reads; give {ACCEPTED}"
            )
    with h5py.File(local, "r") as file:
        if "matrix" in file and isinstance(file["matrix"], h5py.Dataset):
            return LOOM
        if "matrix" in file and "barcodes" in file["matrix"]:
            return TENX_H5
        groups = [file[k] for k in file if isinstance(file[k], h5py.Group)]
        if groups and all("barcodes" in g and "genes" in g for g in groups):
            return TENX_H5  # Cell Ranger 2: one group per genome
        if "X" in file or "obs" in file:
            return H5AD
    raise InputError(
        f"{local}: no X matrix, and none of the HDF5 layouts c2s reads (AnnData X/obs/var, 10x "
        "matrix/barcodes, loom matrix/row_attrs); is this an AnnData .h5ad file?"
    )
