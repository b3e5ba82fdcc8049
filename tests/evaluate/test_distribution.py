"""MMD, kNN label accuracy, gene-word validity and mean correlation against brute-force
float64 numpy, scipy and scikit-learn."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats
from scipy.spatial.distance import cdist, pdist
from sklearn.neighbors import KNeighborsClassifier

from c2s_jax.errors import InputError
from c2s_jax.evaluate import distribution
from c2s_jax.evaluate.distribution import (
    knn_label_accuracy,
    mean_expression_correlation,
    median_pairwise_distance,
    mmd_rbf,
    valid_gene_fraction,
)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")


def brute_force_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD^2 by explicit double sums over every pair."""
    n, m = len(x), len(y)
    kxx = np.exp(-cdist(x, x, "sqeuclidean") / (2 * sigma**2))
    kyy = np.exp(-cdist(y, y, "sqeuclidean") / (2 * sigma**2))
    kxy = np.exp(-cdist(x, y, "sqeuclidean") / (2 * sigma**2))
    within_x = sum(kxx[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(kyy[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return within_x + within_y - 2 * kxy.mean()


def test_mmd_matches_brute_force(monkeypatch):
    monkeypatch.setattr(distribution, "_BLOCK_ROWS", 16)  # several blocks, a ragged last one
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70, 5)) + 100.0  # far from the origin: tests the centring
    y = rng.gamma(2.0, size=(45, 5)) + 99.0
    ours = mmd_rbf(x, y, bandwidths=[0.5, 2.0, 8.0])
    assert list(ours) == [0.5, 2.0, 8.0]
    for sigma, value in ours.items():
        assert value == pytest.approx(brute_force_mmd2(x, y, sigma), rel=1e-10, abs=1e-13)


def test_default_bandwidths_follow_the_median_heuristic():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) + 1.0
    median = np.median(pdist(np.concatenate([x, y])))
    assert median_pairwise_distance(np.concatenate([x, y])) == pytest.approx(median, rel=1e-12)
    ours = mmd_rbf(x, y)
    np.testing.assert_allclose(list(ours), [0.5 * median, median, 2 * median], rtol=1e-12)
    for sigma, value in ours.items():
        assert value == pytest.approx(brute_force_mmd2(x, y, sigma), rel=1e-10)


def test_mmd_separates_distributions_and_is_unbiased_near_zero():
    rng = np.random.default_rng(2)
    same = [mmd_rbf(rng.standard_normal((60, 4)), rng.standard_normal((60, 4)), [2.0])[2.0]]
    same += [mmd_rbf(rng.standard_normal((60, 4)), rng.standard_normal((60, 4)), [2.0])[2.0]]
    shifted = mmd_rbf(rng.standard_normal((60, 4)), rng.standard_normal((60, 4)) + 1.0, [2.0])
    assert max(abs(v) for v in same) < 0.05 < shifted[2.0]


def test_knn_label_accuracy_matches_sklearn(monkeypatch):
    monkeypatch.setattr(distribution, "_BLOCK_ROWS", 32)
    rng = np.random.default_rng(3)
    labels = np.array(["B", "NK", "T", "mono"])
    centres = rng.standard_normal((4, 6)) * 2
    real_codes = rng.integers(0, 4, 300)
    real = centres[real_codes] + rng.standard_normal((300, 6))
    gen_codes = rng.integers(0, 4, 150)
    generated = centres[gen_codes] + 1.5 * rng.standard_normal((150, 6))
    intended = labels[gen_codes]
    for k in (1, 4, 5, 15):  # even k makes vote ties: both break them towards the first label
        reference = KNeighborsClassifier(n_neighbors=k).fit(real, labels[real_codes])
        expected = np.mean(reference.predict(generated) == intended)
        ours = knn_label_accuracy(real, labels[real_codes], generated, intended, k=k)
        assert ours == pytest.approx(expected, abs=1e-12)
    assert 0.5 < ours < 1.0
    unseen = np.where(intended == "B", "platelet", intended)  # never predicted: a miss
    assert knn_label_accuracy(real, labels[real_codes], generated, unseen, k=5) < ours


def test_valid_gene_fraction_counts_unknown_and_repeated_words():
    stats = valid_gene_fraction(
        [["CD3E", "CD3E", "NOTAGENE", "MS4A1"], ["cd3e", "LYZ"], []], ["CD3E", "MS4A1", "LYZ"]
    )
    assert (stats.valid_fraction, stats.duplicate_fraction, stats.n_words) == (4 / 6, 1 / 6, 6)
    empty = valid_gene_fraction([[], []], ["CD3E"])
    assert empty.n_words == 0 and np.isnan(empty.valid_fraction)


def test_mean_expression_correlation_matches_scipy():
    rng = np.random.default_rng(4)
    real = rng.gamma(1.0, size=(50, 30))
    generated = real[:40] * rng.uniform(0.5, 1.5, (40, 30))
    expected = scipy.stats.pearsonr(real.mean(0), generated.mean(0)).statistic
    assert mean_expression_correlation(real, generated) == pytest.approx(expected, rel=1e-12)
    assert mean_expression_correlation(sp.csr_matrix(real), generated) == pytest.approx(
        expected, rel=1e-12
    )
    assert np.isnan(mean_expression_correlation(real, np.ones((5, 30))))
    with pytest.raises(InputError, match=r"generated: has 29 genes but real has 30"):
        mean_expression_correlation(real, generated[:, 1:])


def test_bad_input_names_the_argument():
    x = np.ones((5, 3))
    with pytest.raises(InputError, match=r"y: has 2 columns but x has 3"):
        mmd_rbf(x, np.ones((5, 2)))
    with pytest.raises(InputError, match=r"y: needs at least 2 rows"):
        mmd_rbf(x, np.ones((1, 3)))
    with pytest.raises(InputError, match=r"bandwidths: must be positive"):
        mmd_rbf(x, x, [1.0, 0.0])
    with pytest.raises(InputError, match=r"gen_x: contains NaN"):
        knn_label_accuracy(x, list("aabbc"), np.full((2, 3), np.nan), ["a", "b"])
    with pytest.raises(InputError, match=r"k=6: must be between 1"):
        knn_label_accuracy(x, list("aabbc"), x, list("aabbc"), k=6)
    with pytest.raises(InputError, match=r"real_labels: expected 5 labels"):
        knn_label_accuracy(x, list("aab"), x, list("aabbc"))
