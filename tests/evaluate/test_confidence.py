"""Wilson intervals against the closed form and published values, and the notes that
qualify an accuracy."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from c2s_jax.evaluate.confidence import (
    MIN_CELLS,
    TRIVIAL_NOTE,
    accuracy_with_interval,
    headline,
    reliability_notes,
    wilson_interval,
)


def wilson_closed_form(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), Wilson (1927)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 1), (0, 24), (7, 24), (12, 24), (24, 24), (513, 700)])
def test_wilson_interval_is_the_closed_form(k, n):
    np.testing.assert_allclose(wilson_interval(k, n), wilson_closed_form(k, n), atol=1e-12)


def test_wilson_interval_published_values():
    # 8 of 10 by hand: centre 0.99207 / 1.38415 = 0.71672, half-width 0.22658.
    assert wilson_interval(8, 10) == pytest.approx([0.4902, 0.9433], abs=5e-5)
    # every cell right still leaves room below 1: 24/24 is consistent with 86% accuracy
    low, high = wilson_interval(24, 24)
    assert high == pytest.approx(1.0) and low == pytest.approx(24 / (24 + 1.959963984540054**2))


def test_accuracy_with_interval():
    outcome = accuracy_with_interval(np.array([True] * 7 + [False] * 17))
    assert outcome["accuracy"] == pytest.approx(7 / 24)
    assert outcome["n_correct"] == 7
    np.testing.assert_allclose(outcome["ci95"], wilson_closed_form(7, 24), atol=1e-12)


def test_reliability_notes():
    assert reliability_notes(["B cell", "T cell"] * MIN_CELLS) == []
    trivial, small = reliability_notes(["peripheral blood"] * (MIN_CELLS - 1))
    assert trivial.startswith(TRIVIAL_NOTE) and "peripheral blood" in trivial
    assert headline(trivial) == "trivial: one label"
    assert small.startswith(f"small split: {MIN_CELLS - 1} cells")
    (only,) = reliability_notes(["B cell"] * MIN_CELLS)
    assert only.startswith(TRIVIAL_NOTE)
