"""Perturbation-response metrics against scipy.stats and direct numpy, baselines, and the
seen/unseen tables."""

import numpy as np
import pytest
import scipy.stats

from c2s_jax.errors import InputError
from c2s_jax.evaluate.perturbation import (
    PerturbationResult,
    baseline_predictions,
    perturbation_metrics,
    results_table,
    summary_table,
    top_de_genes,
    train_mean_change,
)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")


def _case(seed: int, n_genes: int = 200):
    rng = np.random.default_rng(seed)
    control = rng.gamma(2.0, size=n_genes)
    true_change = rng.standard_normal(n_genes) * rng.exponential(0.3, n_genes)
    predicted_change = 0.6 * true_change + 0.5 * rng.standard_normal(n_genes)
    return control + predicted_change, control + true_change, control


def test_metrics_match_scipy_and_numpy():
    predicted, true, control = _case(0)
    ours = perturbation_metrics(predicted, true, control, top_de=20)
    true_change, predicted_change = true - control, predicted - control
    top = np.argsort(np.abs(true_change))[::-1][:20]
    assert ours.pearson_delta == pytest.approx(
        scipy.stats.pearsonr(predicted_change, true_change).statistic, rel=1e-12
    )
    assert ours.pearson_delta_top_de == pytest.approx(
        scipy.stats.pearsonr(predicted_change[top], true_change[top]).statistic, rel=1e-12
    )
    assert ours.mse == pytest.approx(np.mean((predicted - true) ** 2), rel=1e-12)
    assert ours.mse_top_de == pytest.approx(np.mean((predicted[top] - true[top]) ** 2), rel=1e-12)
    agree = np.mean(np.sign(predicted_change[top]) == np.sign(true_change[top]))
    assert ours.direction_agreement_top_de == agree
    assert 0.3 < ours.pearson_delta_top_de < 1.0 and 0.5 < agree < 1.0


def test_top_de_genes_by_magnitude_ties_in_gene_order():
    assert list(top_de_genes(np.array([0.1, -3.0, 2.0, 3.0, 0.0]), 3)) == [1, 3, 2]
    assert list(top_de_genes(np.array([1.0, -2.0]), 20)) == [1, 0]


def test_baselines():
    rng = np.random.default_rng(1)
    train_true, train_control = rng.gamma(2.0, size=(6, 50)), rng.gamma(2.0, size=(6, 50))
    change = train_mean_change(train_true, train_control)
    np.testing.assert_allclose(change, (train_true - train_control).mean(0), rtol=1e-12)
    _, true, control = _case(2, n_genes=50)
    baselines = baseline_predictions(control, change)
    np.testing.assert_array_equal(baselines["control_mean"], control)
    np.testing.assert_allclose(baselines["train_mean"], control + change, rtol=1e-12)
    no_change = perturbation_metrics(baselines["control_mean"], true, control)
    # A constant (all-zero) predicted change has no defined Pearson r: scored as 0.
    assert no_change.pearson_delta == 0.0 and no_change.pearson_delta_top_de == 0.0
    assert no_change.direction_agreement_top_de == 0.0
    assert no_change.mse == pytest.approx(np.mean((true - control) ** 2), rel=1e-12)


def _result(perturbation, cell_type, method, seed):
    return PerturbationResult(perturbation, cell_type, method, perturbation_metrics(*_case(seed)))


def test_tables_split_seen_and_unseen_combinations():
    results = [
        _result("IFNG", "T cell", "model", 0),  # seen
        _result("IFNG", "B cell", "model", 1),  # unseen: IFNG only trained in T cells
        _result("TNF", "B cell", "model", 2),  # seen
        _result("IFNG", "T cell", "control_mean", 3),
        _result("IFNG", "B cell", "control_mean", 4),
    ]
    table = results_table(results, [("T cell", "IFNG"), ("B cell", "TNF")])
    assert list(table["seen"]) == [True, False, True, True, False]
    summary = summary_table(table)
    assert list(summary.index) == [
        ("control_mean", "seen"),
        ("control_mean", "unseen"),
        ("model", "seen"),
        ("model", "unseen"),
    ]
    assert summary.loc[("model", "seen"), "n_cases"] == 2
    expected = np.mean([results[0].metrics.mse, results[2].metrics.mse])
    assert summary.loc[("model", "seen"), "mse"] == pytest.approx(expected, rel=1e-12)
    assert summary.loc[("model", "unseen"), "pearson_delta"] == pytest.approx(
        results[1].metrics.pearson_delta
    )


def test_bad_input():
    predicted, true, control = _case(5, n_genes=10)
    with pytest.raises(InputError, match=r"lengths differ \(9, 10, 10\)"):
        perturbation_metrics(predicted[:9], true, control)
    with pytest.raises(InputError, match=r"true_mean: contains NaN"):
        perturbation_metrics(predicted, np.full(10, np.nan), control)
    with pytest.raises(InputError, match=r"top_de=0"):
        perturbation_metrics(predicted, true, control, top_de=0)
    with pytest.raises(InputError, match=r"true_means, control_means"):
        train_mean_change(np.ones((2, 10)), np.ones((3, 10)))
