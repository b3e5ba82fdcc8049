"""Label normalization, accuracy and macro-F1 against scikit-learn, and the expression
baselines on pbmc68k_reduced."""

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from c2s_jax.errors import InputError
from c2s_jax.evaluate.annotation import (
    exact_match_accuracy,
    knn_baseline,
    log_normalized,
    logistic_regression_baseline,
    macro_f1,
    normalize_labels,
)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

SYNONYMS = {"CD14+ Monocyte": "CD14 monocytes", "nk cell": "natural killer cell"}


def test_normalize_labels():
    raw = ["  CD14+ Monocyte. ", "cd14 monocytes", "NK   Cell.", "B cell", "T cell.."]
    assert normalize_labels(raw, SYNONYMS) == [
        "cd14 monocytes",
        "cd14 monocytes",
        "natural killer cell",
        "b cell",
        "t cell.",  # only one final period is an answer's punctuation
    ]
    assert normalize_labels(["CD14+ Monocyte"]) == ["cd14+ monocyte"]


def test_accuracy_and_macro_f1_match_sklearn_on_normalized_labels():
    rng = np.random.default_rng(0)
    classes = ["B cell", "CD14+ Monocyte", "NK cell", "T cell", "Dendritic"]
    true = rng.choice(classes, 200)
    spellings = {"CD14+ Monocyte": "cd14 monocytes.", "NK cell": "Natural Killer cell"}
    predicted = np.where(rng.random(200) < 0.7, true, rng.choice(classes, 200))
    predicted = [spellings.get(p, p) if rng.random() < 0.5 else p.upper() for p in predicted]
    predicted[:5] = ["megakaryocyte"] * 5  # a label no cell has
    pred_norm, true_norm = normalize_labels(predicted, SYNONYMS), normalize_labels(true, SYNONYMS)
    assert exact_match_accuracy(predicted, true, SYNONYMS) == pytest.approx(
        accuracy_score(true_norm, pred_norm), abs=1e-15
    )
    expected = f1_score(true_norm, pred_norm, labels=sorted(set(true_norm)), average="macro")
    assert macro_f1(predicted, true, SYNONYMS) == pytest.approx(expected, abs=1e-15)
    # scikit-learn's default also averages over the invented label (F1 = 0): ours does not.
    assert macro_f1(predicted, true, SYNONYMS) > f1_score(true_norm, pred_norm, average="macro")
    # without synonyms the variant spellings are wrong answers
    assert exact_match_accuracy(predicted, true) < exact_match_accuracy(predicted, true, SYNONYMS)


def test_a_class_never_predicted_scores_zero():
    assert macro_f1(["a", "a", "a"], ["a", "a", "b"]) == pytest.approx((0.8 + 0.0) / 2)


def test_log_normalized_counts_and_pass_through(pbmc_counts):
    expected = pbmc_counts[:50].copy()
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected, base=10)
    ours = log_normalized(pbmc_counts.X[:50], "x")
    np.testing.assert_allclose(ours.toarray(), expected.X.toarray(), rtol=1e-6, atol=1e-7)
    # already normalized: passed through unchanged
    np.testing.assert_array_equal(log_normalized(ours, "x").toarray(), ours.toarray())
    with pytest.raises(InputError, match=r"test_x: contains NaN"):
        log_normalized(np.array([[1.0, np.nan]]), "test_x")


@pytest.fixture(scope="module")
def pbmc_split(pbmc_counts):
    labels = pbmc_counts.obs["cell_type"].to_numpy()
    train, test = train_test_split(
        np.arange(pbmc_counts.n_obs), test_size=0.2, stratify=labels, random_state=0
    )
    X = sp.csr_matrix(pbmc_counts.X)
    return X[train], labels[train], X[test], labels[test]


def test_baselines_on_pbmc_beat_the_majority_class(pbmc_split):
    train_x, train_y, test_x, test_y = pbmc_split
    _, counts = np.unique(test_y, return_counts=True)
    majority = counts.max() / counts.sum()
    lr = logistic_regression_baseline(train_x, train_y, test_x, test_y, seed=0)
    knn = knn_baseline(train_x, train_y, test_x, test_y, k=5)
    assert lr.accuracy > max(0.7, majority + 0.3)
    assert knn.accuracy > majority + 0.3
    n_types = len(np.unique(train_y))
    assert np.all((lr.confidence > 1 / n_types) & (lr.confidence <= 1))
    votes = knn.confidence * 5  # the share of the 5 neighbours that voted for the label
    np.testing.assert_allclose(votes, np.round(votes), atol=1e-12)
    assert np.all(votes >= 1) and votes.max() == 5
    for scores in (lr, knn):
        assert scores.accuracy == pytest.approx(accuracy_score(test_y, scores.predicted))
        assert scores.macro_f1 == pytest.approx(
            f1_score(test_y, scores.predicted, labels=np.unique(test_y), average="macro")
        )
    with pytest.raises(InputError, match=r"test_y: has 3 labels for 140 cells"):
        knn_baseline(train_x, train_y, test_x, test_y[:3])
