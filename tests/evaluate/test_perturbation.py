"""Perturbation-response metrics against scipy and direct numpy (mean change, MMD and
Fréchet distance of cells), baselines of means and of cells, and the seen/unseen tables."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from c2s_jax.errors import InputError
from c2s_jax.evaluate.perturbation import (
    DistributionScores,
    PerturbationResult,
    baseline_predictions,
    distribution_scores,
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


def _mmd2_unbiased(x, y, sigma):
    """Unbiased MMD^2 by whole kernel matrices, straight from the definition."""

    def kernel(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2.0 * sigma**2))

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    n, m = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2.0 * kxy.mean()
    )


def _frechet_scipy(x, y):
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2.0 * root))


def test_distribution_scores_match_direct_definitions():
    rng = np.random.default_rng(7)
    reference = rng.standard_normal((40, 3))
    shifted = rng.standard_normal((30, 3)) * [1.0, 2.0, 0.5] + [1.5, 0.0, -0.5]
    scores = distribution_scores(reference, shifted, bandwidth=1.3)
    assert scores.mmd == pytest.approx(_mmd2_unbiased(reference, shifted, 1.3), rel=1e-10)
    assert scores.scfid == pytest.approx(_frechet_scipy(reference, shifted), rel=1e-8)
    # A sample of the same distribution lies closer than the shifted one on both.
    same = distribution_scores(reference, rng.standard_normal((30, 3)), bandwidth=1.3)
    assert same.mmd < 0.2 * scores.mmd and same.scfid < 0.2 * scores.scfid


def test_distribution_scores_leave_scfid_out_without_more_cells_than_dimensions():
    rng = np.random.default_rng(8)
    scores = distribution_scores(rng.standard_normal((20, 4)), rng.standard_normal((4, 4)), 1.0)
    assert np.isnan(scores.scfid) and np.isfinite(scores.mmd)
    with pytest.raises(InputError, match=r"needs at least 2 rows"):
        distribution_scores(rng.standard_normal((20, 4)), rng.standard_normal((1, 4)), 1.0)


def test_baselines_per_cell_add_the_shift_to_every_control_cell():
    rng = np.random.default_rng(9)
    controls, change = rng.gamma(2.0, size=(5, 12)), rng.standard_normal(12)
    cells = baseline_predictions(controls, change)
    np.testing.assert_array_equal(cells["control_mean"], controls)
    for i in range(5):
        np.testing.assert_allclose(cells["train_mean"][i], controls[i] + change, rtol=1e-15)
    # The mean of the per-cell predictions is the prediction from the mean.
    means = baseline_predictions(controls.mean(0), change)
    np.testing.assert_allclose(cells["train_mean"].mean(0), means["train_mean"], rtol=1e-12)
    with pytest.raises(InputError, match=r"train_change: has 12 genes but control has 11"):
        baseline_predictions(controls[:, :11], change)


def test_tables_carry_distribution_scores_and_floors():
    scores = [DistributionScores(0.5, 3.0), DistributionScores(0.1, 1.0)]
    floors = [DistributionScores(0.01, 0.2), DistributionScores(-0.02, 0.4)]
    metrics = perturbation_metrics(*_case(0))
    results = [
        PerturbationResult("IFN", "B", "model", metrics, scores[0], floors[0]),
        PerturbationResult("IFN", "NK", "model", metrics, scores[1], floors[1]),
        PerturbationResult("IFN", "NK", "control_mean", metrics),
    ]
    table = results_table(results, [])
    assert list(table["mmd"][:2]) == [0.5, 0.1] and list(table["scfid_floor"][:2]) == [0.2, 0.4]
    assert np.isnan(table["mmd"][2]) and np.isnan(table["scfid_floor"][2])
    summary = summary_table(table)
    assert summary.loc[("model", "unseen"), "scfid"] == pytest.approx(2.0)
    assert summary.loc[("model", "unseen"), "mmd_floor"] == pytest.approx(-0.005)
