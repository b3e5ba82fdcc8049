"""PCA embedder against the exact (float64 covariance) PCA; any named callable is an embedder."""

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.decomposition import PCA

from c2s_jax.errors import InputError
from c2s_jax.evaluate.embedders import Embedder, pca_embedder

pytestmark = pytest.mark.usefixtures("single_threaded_blas")


def _sklearn_pca(x: np.ndarray, k: int) -> PCA:
    """scikit-learn's exact PCA (eigh of the float64 covariance)."""
    return PCA(n_components=k, svd_solver="covariance_eigh").fit(x)


def test_matches_the_exact_pca_with_largest_loadings_positive():
    # The axes, their variances and shares of the total, and projections of new cells,
    # against the eigendecomposition of the float64 covariance; every axis's largest
    # loading is positive, as scanpy and scikit-learn's exact solver flip them.
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, size=(80, 30)) @ rng.standard_normal((30, 30))
    ours = pca_embedder(x, n_components=15, seed=3)
    ref = _sklearn_pca(x, 15)
    np.testing.assert_allclose(ours.components_KG, ref.components_, atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_K, ref.explained_variance_, rtol=1e-10)
    new_cells = rng.gamma(1.0, size=(7, 30))
    np.testing.assert_allclose(ours(new_cells), ref.transform(new_cells), atol=1e-9)
    total = np.var(x, axis=0, ddof=1).sum()
    np.testing.assert_allclose(ours.explained_variance_ratio_K, ref.explained_variance_ / total)
    largest = np.abs(ours.components_KG).argmax(axis=1)
    assert (ours.components_KG[np.arange(15), largest] > 0).all()
    assert ours.name == "pca15"


def test_a_seed_gives_the_same_axes_on_sparse_cells():
    x = sp.random(120, 600, density=0.05, random_state=2, format="csr")
    first = pca_embedder(x, n_components=5, seed=1)
    again = pca_embedder(x, n_components=5, seed=1)
    assert first.components_KG.tobytes() == again.components_KG.tobytes()


@pytest.fixture(scope="module")
def pbmc_log_normalized(pbmc_counts) -> sp.csr_matrix:
    adata = pbmc_counts.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata, base=10)
    return sp.csr_matrix(adata.X, dtype=np.float64)


def test_sparse_pca_on_pbmc_matches_the_dense_exact_one(pbmc_log_normalized):
    x = pbmc_log_normalized
    ours = pca_embedder(x, n_components=50, seed=0)
    ref = _sklearn_pca(x.toarray(), 50)
    # The leading axes are well separated and must agree closely; further down the pbmc
    # spectrum is nearly flat (neighbouring axes may rotate into each other), so there
    # the variances and the variance captured in total are compared.
    cosines = np.abs(np.sum(ours.components_KG[:8] * ref.components_[:8], axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_K, ref.explained_variance_, rtol=1e-2)
    assert ours.explained_variance_K.sum() == pytest.approx(ref.explained_variance_.sum(), 1e-3)
    projected = ours(x[:100])  # sparse input stays sparse
    expected = ref.transform(x[:100].toarray())
    np.testing.assert_allclose(projected[:, :5], expected[:, :5], atol=1e-4)


def test_any_named_callable_is_an_embedder():
    class Doubler:
        name = "double"

        def __call__(self, expression):
            return 2 * np.asarray(expression)

    assert isinstance(Doubler(), Embedder)
    assert isinstance(pca_embedder(np.eye(4), n_components=2), Embedder)
    assert not isinstance(np.log1p, Embedder)  # no name


def test_bad_input():
    x = np.random.default_rng(1).random((10, 6))
    with pytest.raises(InputError, match=r"n_components=7: must be between 1 and .* = 6"):
        pca_embedder(x, n_components=7)
    with pytest.raises(InputError, match=r"real_expression: contains NaN"):
        pca_embedder(np.where(x > 0.9, np.nan, x), n_components=2)
    with pytest.raises(InputError, match=r"expression: has 5 genes but the PCA was fitted on 6"):
        pca_embedder(x, n_components=2)(x[:, :5])
