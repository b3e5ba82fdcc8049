"""The embedded default dataset: scanpy's pbmc68k_reduced, back to raw counts.

scanpy's wheel ships 700 PBMCs x 765 genes with 10 cell-type labels. Its .raw.X holds
log1p(counts / n_counts * 1e4), so counts are recovered exactly as
round(expm1(raw.X) * n_counts / 1e4); the rounding removes float noise below 0.1.
"""

import anndata
import numpy as np
import scipy.sparse as sp


def pbmc68k_counts() -> anndata.AnnData:
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
