"""Embedders for scFID: anything with a `name` that maps [cells, genes] to [cells, dims].

The PCA embedder is fitted on real cells and then applied unchanged to real and generated
cells alike, so both land in the same coordinates. A model-based embedder only has to
provide `name` and `__call__` to be used in its place.
"""

import dataclasses
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from c2s_jax.errors import InputError


@runtime_checkable
class Embedder(Protocol):
    """Maps expression [cells, genes] to embeddings [cells, dims]; `name` labels results."""

    name: str

    def __call__(self, expression: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class PcaEmbedder:
    """A fitted PCA projection: (x - mean) @ components.T.

    Attributes:
      mean_G: [genes] float64 mean of the cells it was fitted on.
      components_KG: [k, genes] float64 orthonormal principal axes, by decreasing variance;
        each axis's largest-magnitude loading is positive (scikit-learn's sign convention).
      explained_variance_K: [k] float64 variance along each axis (divided by n - 1).
      explained_variance_ratio_K: [k] each axis's share of the cells' total variance.
      name: 'pca<k>'.
    """

    mean_G: np.ndarray
    components_KG: np.ndarray
    explained_variance_K: np.ndarray
    explained_variance_ratio_K: np.ndarray
    name: str

    def __call__(self, expression: np.ndarray | sp.spmatrix) -> np.ndarray:
        """[cells, genes] (dense or scipy sparse) -> [cells, k] float64 coordinates."""
        x = _checked_matrix(expression, "expression")
        if x.shape[1] != self.mean_G.shape[0]:
            raise InputError(
                f"expression: has {x.shape[1]} genes but the PCA was fitted on "
                f"{self.mean_G.shape[0]}; pass the same genes in the same order"
            )
        return np.asarray(x @ self.components_KG.T) - self.mean_G @ self.components_KG.T


def _checked_matrix(x: np.ndarray | sp.spmatrix, name: str) -> np.ndarray | sp.csr_matrix:
    matrix = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, np.float64)
    if matrix.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array [cells, genes], got shape {matrix.shape}")
    values = matrix.data if sp.issparse(matrix) else matrix
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name}: contains NaN or inf; drop or fix those cells")
    return matrix


def pca_embedder(
    real_expression: np.ndarray | sp.spmatrix, n_components: int = 50, seed: int = 0
) -> PcaEmbedder:
    """Fits PCA on real cells with scikit-learn (sparse input stays sparse: scikit-learn
    centres it implicitly, by ARPACK or the covariance's eigendecomposition).

    Args:
      real_expression: [cells, genes] log-normalized expression of real cells (C2S:
        normalize_total then log10(1 + x)), dense or scipy sparse.
      n_components: dimensions kept, 1 <= n_components <= min(cells, genes).
      seed: seeds the solver's random start.

    Returns:
      The fitted embedder; call it on any cells with the same genes.
    """
    x = _checked_matrix(real_expression, "real_expression")
    n_cells, n_genes = x.shape
    if not 1 <= n_components <= min(n_cells, n_genes):
        raise InputError(
            f"n_components={n_components}: must be between 1 and min(cells, genes) = "
            f"{min(n_cells, n_genes)}"
        )
    if sp.issparse(x) and n_components == min(n_cells, n_genes):
        x = x.toarray()  # ARPACK finds fewer axes than the rank; so small a matrix is dense
    pca = PCA(n_components, random_state=seed).fit(x)
    components_KG = pca.components_
    largest = np.argmax(np.abs(components_KG), axis=1)
    components_KG = (
        components_KG * np.sign(components_KG[np.arange(n_components), largest])[:, None]
    )
    return PcaEmbedder(
        mean_G=pca.mean_,
        components_KG=components_KG,
        explained_variance_K=pca.explained_variance_,
        explained_variance_ratio_K=pca.explained_variance_ratio_,
        name=f"pca{n_components}",
    )
