"""Shared fixtures: the embedded pbmc68k counts and small synthetic AnnData."""

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from c2s_jax.data.embedded import pbmc68k_counts


@pytest.fixture(scope="session")
def pbmc_counts() -> anndata.AnnData:
    """pbmc68k_reduced as raw counts (700 cells x 765 genes)."""
    return pbmc68k_counts()


def make_counts(
    n_cells: int = 60, n_genes: int = 40, seed: int = 0, density: float = 0.4, max_count: int = 6
) -> anndata.AnnData:
    """A small random count matrix with many ties (counts are small integers)."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, max_count + 1, (n_cells, n_genes)) * (
        rng.random((n_cells, n_genes)) < density
    )
    obs = pd.DataFrame(
        {
            "cell_type": rng.choice(["T cell", "B cell", "NK cell"], n_cells),
            "donor": rng.choice(["d1", "d2"], n_cells),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"Gene{j}" for j in range(n_genes)])
    return anndata.AnnData(X=sp.csr_matrix(dense.astype(np.float32)), obs=obs, var=var)


@pytest.fixture
def small_counts() -> anndata.AnnData:
    return make_counts()
