"""How close generated cells are to real ones: MMD, kNN label accuracy, gene-word validity,
mean-expression correlation, and the real-vs-real split that gives each its noise floor.

Everything is computed in float64 numpy. Pairwise work is done in row blocks so that memory
stays at block x cells, never cells x cells.
"""

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from c2s_jax.errors import InputError

DEFAULT_BANDWIDTH_FACTORS = (0.5, 1.0, 2.0)
_BLOCK_ROWS = 1024


def _matrix(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    array = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array [cells, dims], got shape {array.shape}")
    if array.shape[0] < min_rows:
        raise InputError(f"{name}: needs at least {min_rows} rows, got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or inf; drop or fix those cells")
    return array


def _same_columns(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"{name_b}: has {b.shape[1]} columns but {name_a} has {a.shape[1]}; "
            "both must use the same genes or embedding"
        )


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors in float64; nan if either is constant
    (the correlation is undefined there)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    norms = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / norms) if norms > 0 else float("nan")


def median_pairwise_distance(x: np.ndarray, max_rows: int = 1000, seed: int = 0) -> float:
    """Median Euclidean distance over distinct pairs of rows of x [n, d].

    Uses a seeded subset of `max_rows` rows when n is larger (the median heuristic needs
    a typical distance, not every pair).
    """
    x = _matrix(x, "x", min_rows=2)
    if x.shape[0] > max_rows:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False)]
    sq_N = np.sum(x * x, axis=1)
    d2_NN = sq_N[:, None] + sq_N[None, :] - 2.0 * (x @ x.T)
    upper = np.triu_indices(x.shape[0], k=1)
    return float(np.median(np.sqrt(np.maximum(d2_NN[upper], 0.0))))


def _rbf_sums(a_ND: np.ndarray, b_MD: np.ndarray, gammas_B: np.ndarray, same: bool) -> np.ndarray:
    """[B] sums over pairs of exp(-gamma * |a_i - b_j|^2), skipping i == j when `same`."""
    sq_b_M = np.sum(b_MD * b_MD, axis=1)
    sums_B = np.zeros(len(gammas_B))
    for start in range(0, a_ND.shape[0], _BLOCK_ROWS):
        block = a_ND[start : start + _BLOCK_ROWS]
        d2_RM = np.sum(block * block, axis=1)[:, None] + sq_b_M[None, :] - 2.0 * (block @ b_MD.T)
        np.maximum(d2_RM, 0.0, out=d2_RM)
        if same:
            rows = np.arange(block.shape[0])
            d2_RM[rows, start + rows] = np.inf  # exp(-inf) = 0 drops the self-pairs exactly
        for i, gamma in enumerate(gammas_B):
            sums_B[i] += np.exp(-gamma * d2_RM).sum()
    return sums_B


def mmd_rbf(
    x: np.ndarray,
    y: np.ndarray,
    bandwidths: Sequence[float] | None = None,
    *,
    bandwidth_factors: Sequence[float] = DEFAULT_BANDWIDTH_FACTORS,
    seed: int = 0,
) -> dict[float, float]:
    """Unbiased MMD^2 between samples x and y under Gaussian kernels, one per bandwidth.

    k(a, b) = exp(-|a - b|^2 / (2 sigma^2));
    MMD^2 = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j).
    The unbiased estimate can be slightly negative when the samples match.

    Args:
      x: [n, d] real cells (embeddings or expression), n >= 2.
      y: [m, d] generated cells, m >= 2.
      bandwidths: kernel widths sigma, in the units of x. Default: the median pairwise
        distance of the pooled sample (median heuristic) times each of `bandwidth_factors`.
      bandwidth_factors: multipliers of the median for the default bandwidths.
      seed: picks the subset of rows the median is taken over when the pool is large.

    Returns:
      {sigma: MMD^2} in insertion order of the bandwidths.
    """
    x_ND = _matrix(x, "x", min_rows=2)
    y_MD = _matrix(y, "y", min_rows=2)
    _same_columns(x_ND, y_MD, "x", "y")
    # Centring on the pooled mean leaves distances unchanged and shrinks |a|^2 + |b|^2 - 2ab
    # cancellation when the data sit far from the origin.
    centre_D = np.concatenate([x_ND, y_MD]).mean(axis=0)
    x_ND, y_MD = x_ND - centre_D, y_MD - centre_D
    if bandwidths is None:
        median = median_pairwise_distance(np.concatenate([x_ND, y_MD]), seed=seed)
        bandwidths = [factor * median for factor in bandwidth_factors]
    sigmas_B = np.asarray(bandwidths, np.float64)
    if sigmas_B.ndim != 1 or not np.all(sigmas_B > 0):
        raise InputError(f"bandwidths: must be positive numbers, got {list(bandwidths)}")
    gammas_B = 1.0 / (2.0 * sigmas_B**2)
    n, m = x_ND.shape[0], y_MD.shape[0]
    mmd2_B = (
        _rbf_sums(x_ND, x_ND, gammas_B, same=True) / (n * (n - 1))
        + _rbf_sums(y_MD, y_MD, gammas_B, same=True) / (m * (m - 1))
        - 2.0 * _rbf_sums(x_ND, y_MD, gammas_B, same=False) / (n * m)
    )
    return {float(s): float(v) for s, v in zip(sigmas_B, mmd2_B, strict=True)}


def knn_label_accuracy(
    real_x: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    gen_x: np.ndarray,
    gen_intended_labels: Sequence[str] | np.ndarray,
    k: int = 5,
) -> float:
    """Share of generated cells that a k-nearest-neighbour classifier fitted on real cells
    assigns to the label they were generated for.

    Neighbours by Euclidean distance; each of the k votes counts once and a tie goes to the
    label that sorts first (scikit-learn's KNeighborsClassifier rule). An intended label
    that no real cell carries can never be predicted and counts as a miss.

    Args:
      real_x: [n, d] real cells; real_labels: [n] their labels.
      gen_x: [m, d] generated cells; gen_intended_labels: [m] the label each was asked for.
      k: neighbours, 1 <= k <= n.

    Returns:
      Accuracy in [0, 1].
    """
    real_ND = _matrix(real_x, "real_x")
    gen_MD = _matrix(gen_x, "gen_x")
    _same_columns(real_ND, gen_MD, "real_x", "gen_x")
    real_labels = np.asarray(real_labels)
    intended = np.asarray(gen_intended_labels)
    if real_labels.shape != (real_ND.shape[0],):
        raise InputError(
            f"real_labels: expected {real_ND.shape[0]} labels, got {real_labels.shape}"
        )
    if intended.shape != (gen_MD.shape[0],):
        raise InputError(
            f"gen_intended_labels: expected {gen_MD.shape[0]} labels, got {intended.shape}"
        )
    if not 1 <= k <= real_ND.shape[0]:
        raise InputError(f"k={k}: must be between 1 and the number of real cells")
    classes, codes_N = np.unique(real_labels, return_inverse=True)
    centre_D = real_ND.mean(axis=0)
    real_ND, gen_MD = real_ND - centre_D, gen_MD - centre_D
    sq_real_N = np.sum(real_ND * real_ND, axis=1)
    predicted = np.empty(gen_MD.shape[0], dtype=np.int64)
    for start in range(0, gen_MD.shape[0], _BLOCK_ROWS):
        block = gen_MD[start : start + _BLOCK_ROWS]
        # |g|^2 is the same for every neighbour of g, so it does not change the order.
        rank_key_RN = sq_real_N[None, :] - 2.0 * (block @ real_ND.T)
        nearest_RK = np.argpartition(rank_key_RN, k - 1, axis=1)[:, :k]
        votes_RC = np.zeros((block.shape[0], len(classes)), dtype=np.int64)
        np.add.at(votes_RC, (np.arange(block.shape[0])[:, None], codes_N[nearest_RK]), 1)
        predicted[start : start + block.shape[0]] = np.argmax(votes_RC, axis=1)
    return float(np.mean(classes[predicted] == intended))


@dataclasses.dataclass(frozen=True)
class GeneWordStats:
    """Validity of generated gene words.

    Attributes:
      valid_fraction: share of generated words that are genes of the vocabulary.
      duplicate_fraction: share of generated words that repeat an earlier word of the same
        cell (a cell sentence names each gene once).
      n_words: generated words counted.
    """

    valid_fraction: float
    duplicate_fraction: float
    n_words: int


def valid_gene_fraction(
    generated_gene_lists: Iterable[Sequence[str]], vocabulary: Iterable[str]
) -> GeneWordStats:
    """Counts how many generated words are real genes and how many are repeats.

    Words are compared exactly (C2S words are upper-cased gene symbols, and so must the
    vocabulary be). Both fractions are nan when nothing was generated.

    Args:
      generated_gene_lists: per generated cell, its words in order.
      vocabulary: the gene symbols the model may name.
    """
    known = set(vocabulary)
    n_words = n_valid = n_repeats = 0
    for words in generated_gene_lists:
        n_words += len(words)
        n_valid += sum(word in known for word in words)
        n_repeats += len(words) - len(set(words))
    if n_words == 0:
        return GeneWordStats(float("nan"), float("nan"), 0)
    return GeneWordStats(n_valid / n_words, n_repeats / n_words, n_words)


def _column_means(x: np.ndarray | sp.spmatrix, name: str) -> np.ndarray:
    if not sp.issparse(x):
        return _matrix(x, name).mean(axis=0)
    matrix = sp.csr_matrix(x, dtype=np.float64)
    if matrix.shape[0] == 0:
        raise InputError(f"{name}: has no cells")
    if not np.all(np.isfinite(matrix.data)):
        raise InputError(f"{name}: contains NaN or inf; drop or fix those cells")
    return np.asarray(matrix.mean(axis=0)).ravel()


def mean_expression_correlation(
    real: np.ndarray | sp.spmatrix, generated: np.ndarray | sp.spmatrix
) -> float:
    """Pearson correlation across genes of the mean expression of real and generated cells.

    Args:
      real: [n, genes] real cells; generated: [m, genes] generated cells on the same genes
        and scale (dense or scipy sparse).

    Returns:
      Pearson r in [-1, 1]; nan when either mean profile is constant.
    """
    means = [_column_means(real, "real"), _column_means(generated, "generated")]
    if means[0].shape != means[1].shape:
        raise InputError(
            f"generated: has {means[1].shape[0]} genes but real has {means[0].shape[0]}; "
            "use the same genes in the same order"
        )
    return pearson(means[0], means[1])
