"""Perturbation-response scores: how well predicted perturbed cells match real ones.

Per perturbation, from the means: Pearson of predicted vs true change from the control
mean over all genes and over the top differentially expressed (DE) genes (largest |true
change|), MSE of the means, and the share of top-DE genes whose predicted change has the
right sign. From the cells themselves: MMD and Fréchet distance (scFID) of predicted vs
real perturbed cells in an embedding, each beside the same distance between two disjoint
samples of real perturbed cells (the real-vs-real floor). Two baselines set the bar:
"control_mean" predicts no change (the control cells themselves), "train_mean" adds the
average change of the training perturbations to the controls. Results are tabulated with
a flag for (cell type, perturbation) combinations never seen in training, and summarized
separately for seen and unseen.
"""

import dataclasses
from collections.abc import Iterable

import jax
import numpy as np
import pandas as pd

from c2s_jax.errors import InputError
from c2s_jax.evaluate.distribution import mmd_rbf, pearson
from c2s_jax.evaluate.scfid import frechet_distance

DEFAULT_TOP_DE = 20
METRIC_NAMES = (
    "pearson_delta",
    "pearson_delta_top_de",
    "mse",
    "mse_top_de",
    "direction_agreement_top_de",
)
DISTRIBUTION_NAMES = ("mmd", "mmd_floor", "scfid", "scfid_floor")


@dataclasses.dataclass(frozen=True)
class PerturbationMetrics:
    """Scores of one predicted perturbation response (expression units of the inputs).

    Attributes:
      pearson_delta: Pearson r of predicted vs true change from control, all genes.
      pearson_delta_top_de: the same over the top-DE genes.
      mse: mean squared error of predicted vs true mean expression, all genes.
      mse_top_de: the same over the top-DE genes.
      direction_agreement_top_de: share of top-DE genes where sign(predicted change) equals
        sign(true change); a predicted change of exactly zero never agrees with a non-zero
        true change.

    A Pearson r is undefined when either change vector is constant, as for the
    control-mean baseline, whose predicted change is all zeros. It is reported as 0 there:
    a constant prediction carries no information about which genes move, which is the
    meaning of r = 0, and it keeps averages over perturbations defined.
    """

    pearson_delta: float
    pearson_delta_top_de: float
    mse: float
    mse_top_de: float
    direction_agreement_top_de: float


def _vector(x: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(x, np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"{name}: expected a non-empty [genes] vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or inf")
    return array


def _cells(x: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(x, np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(f"{name}: expected a non-empty [cells, genes] array, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or inf")
    return array


def _pearson_or_zero(x: np.ndarray, y: np.ndarray) -> float:
    r = pearson(x, y)
    return 0.0 if np.isnan(r) else r


def top_de_genes(true_change_G: np.ndarray, top_de: int = DEFAULT_TOP_DE) -> np.ndarray:
    """Indices of the `top_de` genes with the largest |true change|, largest first; equal
    magnitudes keep gene order. All genes when there are fewer."""
    order = np.argsort(-np.abs(np.asarray(true_change_G)), kind="stable")
    return order[:top_de]


def perturbation_metrics(
    predicted_mean: np.ndarray,
    true_mean: np.ndarray,
    control_mean: np.ndarray,
    top_de: int = DEFAULT_TOP_DE,
) -> PerturbationMetrics:
    """Scores a predicted mean response of one perturbation against the true one.

    Args:
      predicted_mean: [genes] predicted mean expression of the perturbed cells.
      true_mean: [genes] observed mean expression of the perturbed cells.
      control_mean: [genes] mean expression of the matching control cells.
      top_de: how many genes, by |true_mean - control_mean|, form the top-DE set.
    """
    predicted_G = _vector(predicted_mean, "predicted_mean")
    true_G = _vector(true_mean, "true_mean")
    control_G = _vector(control_mean, "control_mean")
    if not predicted_G.shape == true_G.shape == control_G.shape:
        raise InputError(
            f"predicted_mean, true_mean, control_mean: lengths differ ({predicted_G.size}, "
            f"{true_G.size}, {control_G.size}); give all three over the same genes"
        )
    if top_de < 1:
        raise InputError(f"top_de={top_de}: must be at least 1")
    predicted_change_G = predicted_G - control_G
    true_change_G = true_G - control_G
    top = top_de_genes(true_change_G, top_de)
    error_G = predicted_G - true_G
    return PerturbationMetrics(
        pearson_delta=_pearson_or_zero(predicted_change_G, true_change_G),
        pearson_delta_top_de=_pearson_or_zero(predicted_change_G[top], true_change_G[top]),
        mse=float(np.mean(error_G**2)),
        mse_top_de=float(np.mean(error_G[top] ** 2)),
        direction_agreement_top_de=float(
            np.mean(np.sign(predicted_change_G[top]) == np.sign(true_change_G[top]))
        ),
    )


def train_mean_change(true_means: np.ndarray, control_means: np.ndarray) -> np.ndarray:
    """[genes] average change from control over the training perturbations.

    Args:
      true_means: [perturbations, genes] mean expression of each training perturbation.
      control_means: [perturbations, genes] the matching control means.
    """
    true_PG = np.asarray(true_means, np.float64)
    control_PG = np.asarray(control_means, np.float64)
    if true_PG.ndim != 2 or true_PG.shape[0] == 0 or true_PG.shape != control_PG.shape:
        raise InputError(
            f"true_means, control_means: expected equal [perturbations, genes] arrays with at "
            f"least one perturbation, got {true_PG.shape} and {control_PG.shape}"
        )
    return np.mean(true_PG - control_PG, axis=0)


def baseline_predictions(control: np.ndarray, train_change: np.ndarray) -> dict[str, np.ndarray]:
    """The baselines' prediction for one perturbation, of a mean or of each cell.

    Args:
      control: [genes] mean of the matching control cells, or [cells, genes] the control
        cells themselves (one prediction per cell).
      train_change: [genes] from `train_mean_change`.

    Returns:
      {"control_mean": no change, "train_mean": control plus the average training change},
      each shaped like `control`.
    """
    change_G = _vector(train_change, "train_change")
    if np.ndim(control) == 1:
        control_XG = _vector(control, "control")
    else:
        control_XG = _cells(control, "control")
    if control_XG.shape[-1] != change_G.size:
        raise InputError(
            f"train_change: has {change_G.size} genes but control has {control_XG.shape[-1]}"
        )
    return {"control_mean": control_XG, "train_mean": control_XG + change_G}


@dataclasses.dataclass(frozen=True)
class DistributionScores:
    """Distances of a sample of cells from the real perturbed cells, in one embedding.

    Attributes:
      mmd: unbiased MMD^2 under a Gaussian kernel of the given bandwidth (can be slightly
        negative when the samples match).
      scfid: Fréchet distance of Gaussians fitted to the two samples (squared embedding
        units); nan when either sample has no more cells than dimensions, where the
        covariance is rank-deficient and the distance biased.
    """

    mmd: float
    scfid: float


def distribution_scores(
    reference: np.ndarray, cells: np.ndarray, bandwidth: float
) -> DistributionScores:
    """MMD^2 and Fréchet distance of `cells` from `reference`.

    Args:
      reference: [n, dims] embeddings of real perturbed cells, n >= 2.
      cells: [m, dims] embeddings of predicted (or other real) cells, m >= 2.
      bandwidth: the Gaussian kernel's sigma, in embedding units; pass one value for every
        sample compared to the same reference, so their MMDs share a scale.
    """
    reference_ND = _cells(reference, "reference")
    cells_MD = _cells(cells, "cells")
    mmd = mmd_rbf(reference_ND, cells_MD, [bandwidth])  # checks >= 2 rows and equal dims
    scfid = float("nan")
    if min(reference_ND.shape[0], cells_MD.shape[0]) > reference_ND.shape[1]:
        # Real-vs-real floors lie far below the covariance traces: float32 rounding of
        # the traces would swamp them.
        with jax.enable_x64(True):
            scfid = frechet_distance(reference_ND, cells_MD, dtype=np.float64)
    return DistributionScores(mmd=next(iter(mmd.values())), scfid=scfid)


@dataclasses.dataclass(frozen=True)
class PerturbationResult:
    """One method's scores on one (cell type, perturbation) test case.

    Attributes:
      distribution: the method's cells against real perturbed cells (None: not scored).
      floor: real perturbed cells against other real perturbed cells of the same case.
    """

    perturbation: str
    cell_type: str
    method: str
    metrics: PerturbationMetrics
    distribution: DistributionScores | None = None
    floor: DistributionScores | None = None


def results_table(
    results: Iterable[PerturbationResult], train_combinations: Iterable[tuple[str, str]]
) -> pd.DataFrame:
    """One row per result: perturbation, cell_type, method, seen, and every metric
    (METRIC_NAMES, then DISTRIBUTION_NAMES; nan where a result has no distribution scores).

    Args:
      results: scores of every method on every test case.
      train_combinations: (cell_type, perturbation) pairs present in training; `seen` is
        False for a test case whose pair is not among them.
    """
    seen_pairs = {(str(c), str(p)) for c, p in train_combinations}
    nan = DistributionScores(float("nan"), float("nan"))
    rows = [
        {
            "perturbation": r.perturbation,
            "cell_type": r.cell_type,
            "method": r.method,
            "seen": (r.cell_type, r.perturbation) in seen_pairs,
            **dataclasses.asdict(r.metrics),
            "mmd": (r.distribution or nan).mmd,
            "mmd_floor": (r.floor or nan).mmd,
            "scfid": (r.distribution or nan).scfid,
            "scfid_floor": (r.floor or nan).scfid,
        }
        for r in results
    ]
    columns = ["perturbation", "cell_type", "method", "seen", *METRIC_NAMES, *DISTRIBUTION_NAMES]
    return pd.DataFrame(rows, columns=columns)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per method, for seen and unseen combinations separately.

    Args:
      table: from `results_table`.

    Returns:
      Rows indexed by (method, split) with split "seen" or "unseen"; columns n_cases and
      the metrics. A split with no cases has no row.
    """
    split = np.where(table["seen"].to_numpy(bool), "seen", "unseen")
    grouped = table.assign(split=split).groupby(["method", "split"], sort=True)
    summary = grouped[[*METRIC_NAMES, *DISTRIBUTION_NAMES]].mean()
    summary.insert(0, "n_cases", grouped.size())
    return summary
