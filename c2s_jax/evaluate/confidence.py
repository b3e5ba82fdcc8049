"""How sure an accuracy is: its 95% Wilson score interval, and the notes a reader needs
before trusting it (a task with one label, a split too small for a useful interval).

The Wilson interval keeps its coverage near 95% even at 0 or 100% accuracy and for small
counts, where the normal approximation collapses to a zero-width interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
# Below this many cells a 95% interval spans about 40 points or more: say so beside it.
MIN_CELLS = 20
TRIVIAL_NOTE = "trivial: one label"


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> list[float]:
    """[low, high] Wilson score interval of the proportion ``correct / total``."""
    interval = binomtest(int(correct), int(total)).proportion_ci(confidence, method="wilson")
    return [float(interval.low), float(interval.high)]


def accuracy_with_interval(correct: np.ndarray) -> dict:
    """{"accuracy", "ci95": [low, high], "n_correct"} of per-item outcomes.

    Args:
      correct: [n] bool, whether each item (cell, question) was answered right; n >= 1.
    """
    correct = np.asarray(correct, bool)
    hits = int(correct.sum())
    return {
        "accuracy": hits / len(correct),
        "ci95": wilson_interval(hits, len(correct)),
        "n_correct": hits,
    }


def reliability_notes(truth: Sequence[str], min_cells: int = MIN_CELLS) -> list[str]:
    """What a reader must know before reading the accuracies of one task.

    Args:
      truth: [n] the evaluated items' true labels (normalized).
      min_cells: fewer items than this get a small-sample note.
    """
    notes = []
    if len(set(truth)) == 1:
        notes.append(
            f"{TRIVIAL_NOTE} ('{truth[0]}' for every cell), so naming it scores 1.0 and "
            "says nothing about the model"
        )
    if len(truth) < min_cells:
        notes.append(
            f"small split: {len(truth)} cells (< {min_cells}), too few for a meaningful "
            "interval; read the 95% interval, not the point value"
        )
    return notes


def headline(note: str) -> str:
    """A note's first words, for a one-line summary ('trivial: one label')."""
    return note.split(" (")[0]
