"""Cell-type annotation scores: label normalization, exact-match accuracy, macro-F1, and the
expression baselines (logistic regression, kNN) a model's answers are compared with.

Model answers and dataset labels differ in case, spacing, a final period ("CD14+
Monocyte.") and sometimes in wording; synonyms from the config map wording variants onto
one name before anything is compared.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from c2s_jax.errors import InputError
from c2s_jax.sentences.normalization import log1p10_normalize, looks_like_counts

TARGET_SUM = 1e4


def _canonical(label: str) -> str:
    """Case-folded, inner whitespace collapsed, outer whitespace and one final period removed."""
    text = " ".join(str(label).casefold().split())
    return text.removesuffix(".").rstrip()


def normalize_labels(labels: Sequence[str], synonyms: Mapping[str, str] | None = None) -> list[str]:
    """Labels in a comparable form: case-folded, whitespace collapsed and stripped, one
    trailing period dropped, then mapped through `synonyms`.

    Args:
      labels: [n] label strings (model answers or dataset labels).
      synonyms: {variant: name}; keys and values are normalized the same way first, so
        {"CD14+ Monocyte": "CD14 Monocytes"} matches "cd14+ monocyte." One step only:
        a name is not looked up again.
    """
    table = {_canonical(k): _canonical(v) for k, v in (synonyms or {}).items()}
    canonical = (_canonical(label) for label in labels)
    return [table.get(label, label) for label in canonical]


def _normalized_pair(
    predicted: Sequence[str], true: Sequence[str], synonyms: Mapping[str, str] | None
) -> tuple[np.ndarray, np.ndarray]:
    if len(predicted) != len(true):
        raise InputError(f"predicted: has {len(predicted)} labels but true has {len(true)}")
    if len(true) == 0:
        raise InputError("true: no labels to score")
    return (
        np.asarray(normalize_labels(predicted, synonyms), dtype=object),
        np.asarray(normalize_labels(true, synonyms), dtype=object),
    )


def correct_answers(
    predicted: Sequence[str], true: Sequence[str], synonyms: Mapping[str, str] | None = None
) -> np.ndarray:
    """[n] bool: whether each normalized predicted label equals its normalized true label."""
    pred, truth = _normalized_pair(predicted, true, synonyms)
    return np.asarray(pred == truth, bool)


def exact_match_accuracy(
    predicted: Sequence[str], true: Sequence[str], synonyms: Mapping[str, str] | None = None
) -> float:
    """Share of cells whose normalized predicted label equals the normalized true label."""
    return float(np.mean(correct_answers(predicted, true, synonyms)))


def macro_f1(
    predicted: Sequence[str], true: Sequence[str], synonyms: Mapping[str, str] | None = None
) -> float:
    """Unweighted mean over the true labels' classes of F1 = 2 TP / (2 TP + FP + FN).

    Classes are the normalized true labels only: a predicted label that no cell carries
    (an invented cell type) lowers the recall of the class it was given for but does not
    add a class of its own. A class never predicted correctly scores 0.
    """
    pred, truth = _normalized_pair(predicted, true, synonyms)
    scores = []
    for label in np.unique(truth):
        true_positive = np.sum((pred == label) & (truth == label))
        false_positive = np.sum((pred == label) & (truth != label))
        false_negative = np.sum((pred != label) & (truth == label))
        scores.append(2 * true_positive / (2 * true_positive + false_positive + false_negative))
    return float(np.mean(scores))


def log_normalized(x: np.ndarray | sp.spmatrix, where: str) -> sp.csr_matrix:
    """C2S log-normalized expression [cells, genes] as float32 CSR.

    Raw counts (whole numbers) are scaled to TARGET_SUM per cell and put through
    log10(1 + x); anything else is taken as normalized already and passed through.
    Cells without counts stay all zero.

    Args:
      x: [cells, genes] counts or normalized expression, dense or scipy sparse.
      where: the argument's name, for messages.
    """
    matrix = sp.csr_matrix(x, dtype=np.float32)
    if not np.all(np.isfinite(matrix.data)):
        raise InputError(f"{where}: contains NaN or inf; drop or fix those cells")
    if not looks_like_counts(matrix.data, where):
        return matrix
    totals_C = np.asarray(matrix.sum(axis=1), np.float64).ravel()
    return log1p10_normalize(matrix, np.where(totals_C > 0, totals_C, 1.0), TARGET_SUM)


@dataclasses.dataclass(frozen=True)
class BaselineScores:
    """A baseline's predictions on the test cells and their scores.

    Attributes:
      predicted: [test cells] predicted labels.
      confidence: [test cells] the classifier's probability of its predicted label
        (logistic regression: softmax; kNN: share of the k neighbours' votes).
      accuracy: exact-match accuracy.
      macro_f1: macro-F1 over the true labels' classes.
    """

    predicted: np.ndarray
    confidence: np.ndarray
    accuracy: float
    macro_f1: float


def _scored(model, test: sp.csr_matrix, test_y: Sequence[str]) -> BaselineScores:
    probabilities = model.predict_proba(test)
    predicted = model.classes_[np.argmax(probabilities, axis=1)]
    return BaselineScores(
        predicted=predicted,
        confidence=probabilities.max(axis=1),
        accuracy=exact_match_accuracy(predicted, test_y),
        macro_f1=macro_f1(predicted, test_y),
    )


def _checked_split(
    train_x: np.ndarray | sp.spmatrix,
    train_y: Sequence[str],
    test_x: np.ndarray | sp.spmatrix,
    test_y: Sequence[str],
) -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix]:
    """Log-normalized train and test matrices and the train labels, shapes checked."""
    train, test = log_normalized(train_x, "train_x"), log_normalized(test_x, "test_x")
    if train.shape[1] != test.shape[1]:
        raise InputError(f"test_x: has {test.shape[1]} genes but train_x has {train.shape[1]}")
    for name, x, y in (("train_y", train, train_y), ("test_y", test, test_y)):
        if len(y) != x.shape[0]:
            raise InputError(f"{name}: has {len(y)} labels for {x.shape[0]} cells")
    return train, np.asarray(train_y), test


def logistic_regression_baseline(
    train_x: np.ndarray | sp.spmatrix,
    train_y: Sequence[str],
    test_x: np.ndarray | sp.spmatrix,
    test_y: Sequence[str],
    seed: int = 0,
) -> BaselineScores:
    """Multinomial logistic regression (L2, C = 1, lbfgs) on log-normalized expression.

    Args:
      train_x, test_x: [cells, genes] counts or log-normalized expression, same genes.
      train_y, test_y: [cells] labels.
      seed: the classifier's random_state.
    """
    from sklearn.linear_model import LogisticRegression  # heavy; only the baselines need it

    train, labels, test = _checked_split(train_x, train_y, test_x, test_y)
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(train, labels)
    return _scored(model, test, test_y)


def knn_baseline(
    train_x: np.ndarray | sp.spmatrix,
    train_y: Sequence[str],
    test_x: np.ndarray | sp.spmatrix,
    test_y: Sequence[str],
    k: int = 5,
) -> BaselineScores:
    """k-nearest-neighbour vote (Euclidean, uniform weights) on log-normalized expression.

    Args:
      train_x, test_x: [cells, genes] counts or log-normalized expression, same genes.
      train_y, test_y: [cells] labels.
      k: neighbours.
    """
    from sklearn.neighbors import KNeighborsClassifier  # heavy; only the baselines need it

    train, labels, test = _checked_split(train_x, train_y, test_x, test_y)
    model = KNeighborsClassifier(n_neighbors=k).fit(train, labels)
    return _scored(model, test, test_y)
