"""Scaling laws from a sweep's results: read the points, fit power laws, allocate compute.

Two forms, with N the non-embedding parameters, D the training tokens and L the final eval
loss (nats per token):

    L(N)    = E + A * N^-alpha
    L(N, D) = E + A * N^-alpha + B * D^-beta

Fitted as in Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models",
appendix D.2: the Huber loss (delta 1e-3) between log L_pred and log L, with
log L_pred = logsumexp(log A - alpha log N, log B - beta log D, log E) so that E, A and B
stay positive, minimized by L-BFGS-B from the best starts of a grid over (log E, log A,
alpha, log B, beta). Confidence intervals come from the bootstrap: resample the points
with replacement (seeded), refit, take percentiles.

The compute-optimal allocation assumes training FLOPs C = 6 N D (forward + backward of
the dense layers, attention and the embedding left out).
"""

import dataclasses
import itertools
import math
import os
import warnings
from collections.abc import Sequence
from numbers import Real
from pathlib import Path

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from c2s_jax.errors import InputError
from c2s_jax.storage.json_lines import read_json_lines

HUBER_DELTA = 1e-3
# Names in the order of the internal parameter vector [log E, log A, alpha, log B, beta];
# a one-variable fit uses the first three.
PARAM_NAMES = ("E", "A", "alpha", "B", "beta")
_LOG_SCALED = ("E", "A", "B")
# What the fit reads from each point; the rest has defaults (see read_results).
REQUIRED_FIELDS = ("n_params", "tokens", "loss")
OPTIONAL_FIELDS = ("n_params_total", "flops")
# Grid of starts (Hoffmann et al. use the same ranges for log A, log B and the exponents);
# E is placed as fractions of the smallest observed loss so that any loss scale is covered.
_E_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
_LOG_COEFFICIENTS = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
_EXPONENTS = (0.05, 0.5, 1.0, 1.5, 2.0)
_EXPONENT_BOUNDS = (0.0, 5.0)
# L-BFGS-B runs from this many of the best grid starts; a bootstrap refit from the first
# few of them and from the full-data optimum.
_STARTS = 8
_BOOTSTRAP_STARTS = 2
_PROGRESS_ABOVE = 50


@dataclasses.dataclass(frozen=True)
class ScalingPoint:
    """One trained model of a sweep (a line of `results.jsonl`).

    Attributes:
      name: run name ("line K" when the line has none).
      n_params: non-embedding parameters (the N of the fit).
      n_params_total: all parameters, embeddings included (N when the line has none).
      tokens: training tokens (the D of the fit).
      flops: training FLOPs of the run (6 N D when the line has none).
      loss: final eval loss, nats per token.
      task_loss: final eval loss per task (may be empty).
      source: "FILE, line K", for messages.
    """

    name: str
    n_params: float
    n_params_total: float
    tokens: float
    flops: float
    loss: float
    task_loss: dict[str, float]
    source: str


def read_results(path: str | os.PathLike) -> list[ScalingPoint]:
    """Reads the points of a results file: one JSON object per line, as a sweep writes
    (`results.jsonl`) or as typed by hand from a paper's table.

    Each object needs `n_params`, `tokens` and `loss`; `name` (default "line K"),
    `n_params_total` (default: `n_params`), `flops` (default: 6 x n_params x tokens, the
    fit's own assumption) and `task_loss` (default: none) are read when present, and other
    fields (a sweep's `config`, `axes`, ...) are ignored. Lines are read by the rule of
    :mod:`c2s_jax.storage.json_lines`: a cut-short last line (a sweep still writing) is skipped
    with a warning naming it.

    Raises:
      InputError: the file is missing, not UTF-8 or holds no point, an earlier line is not
        JSON, or a field is missing or not a finite positive number (named with file and
        line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such results file (a sweep writes results.jsonl)")
    lines = read_json_lines(path)
    if lines.cut_short is not None:
        warnings.warn(f"{path}, line {lines.cut_short}: incomplete last line skipped", stacklevel=2)
    points = [_point(record, f"{path}, line {number}") for number, record in lines.records]
    if not points:
        raise InputError(f"{path}: holds no results")
    return points


def _point(record, source: str) -> ScalingPoint:
    if not isinstance(record, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(record).__name__}")
    for field in REQUIRED_FIELDS:
        if field not in record:
            raise InputError(f"{source}: field '{field}' is missing")
    name = record.get("name", source.rpartition(", ")[2])
    if not isinstance(name, str):
        raise InputError(f"{source}: field 'name' must be a string")
    values = {
        field: _positive(record[field], f"{source}: field '{field}'")
        for field in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)
        if field in record
    }
    values.setdefault("n_params_total", values["n_params"])
    values.setdefault("flops", 6.0 * values["n_params"] * values["tokens"])
    task_losses = record.get("task_loss", {})
    if not isinstance(task_losses, dict):
        raise InputError(f"{source}: field 'task_loss' must be an object of task: loss")
    task_loss = {
        str(task): _positive(value, f"{source}: field 'task_loss.{task}'")
        for task, value in task_losses.items()
    }
    return ScalingPoint(name=name, task_loss=task_loss, source=source, **values)


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{where} must be a finite number, got {value!r}")
    if value <= 0:
        raise InputError(f"{where} must be positive, got {value!r}")
    return float(value)


def target_losses(points: Sequence[ScalingPoint], task: str | None = None) -> np.ndarray:
    """The losses to fit, [P]: each point's `loss`, or its `task_loss[task]`.

    Raises:
      InputError: a point has no loss for `task` (names its line and the tasks it has).
    """
    if task is None:
        return np.array([p.loss for p in points])
    for p in points:
        if task not in p.task_loss:
            raise InputError(
                f"{p.source}: field 'task_loss' has no task '{task}' "
                f"(tasks there: {sorted(p.task_loss) or 'none'})"
            )
    return np.array([p.task_loss[task] for p in points])


@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """A fitted law and its bootstrap refits.

    Attributes:
      values: {'E', 'A', 'alpha'} (and 'B', 'beta' for the two-variable law).
      samples: [S, K] bootstrap refits, columns in the order of `names` (S = 0 without
        bootstrap).
      n_points: points fitted.
      objective: summed Huber loss at the optimum (in units of log loss).
      no_intervals: why bootstrap intervals were asked for but are undefined, or None.
    """

    values: dict[str, float]
    samples: np.ndarray
    n_points: int
    objective: float
    no_intervals: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return PARAM_NAMES[: len(self.values)]

    @property
    def two_variable(self) -> bool:
        return "B" in self.values

    def ci(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile intervals {name: (low, high)}; empty without bootstrap."""
        if not len(self.samples):
            return {}
        low, high = np.percentile(self.samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
        return {n: (float(lo), float(hi)) for n, lo, hi in zip(self.names, low, high, strict=True)}

    def predict(self, n_params, tokens=None) -> np.ndarray:
        """L at `n_params` (and `tokens` for the two-variable law); broadcasts."""
        return _loss(self.values, n_params, tokens)

    def predict_samples(self, n_params, tokens=None) -> np.ndarray:
        """L under each bootstrap refit: [S, *broadcast shape]."""
        params = {n: self.samples[:, i] for i, n in enumerate(self.names)}
        shape = (-1,) + (1,) * np.broadcast(n_params, 1 if tokens is None else tokens).ndim
        return _loss({n: v.reshape(shape) for n, v in params.items()}, n_params, tokens)


def _loss(values, n_params, tokens) -> np.ndarray:
    loss = values["E"] + values["A"] * np.asarray(n_params, float) ** -values["alpha"]
    if "B" in values:
        loss = loss + values["B"] * np.asarray(tokens, float) ** -values["beta"]
    return loss


def check_fittable(
    n_params: np.ndarray,
    tokens: np.ndarray | None = None,
    *,
    where: str = "the results",
    variable: str = "n_params",
) -> None:
    """Raises InputError unless the points can determine the law's constants.

    L(N) has three constants along N, so it needs 3 distinct sizes; L(N, D) has five, so it
    needs 5 distinct (N, D) pairs spread over at least 2 sizes and 2 token counts.
    """
    sizes = len(np.unique(n_params))
    if tokens is None:
        if len(n_params) < 3:
            raise InputError(
                f"{where}: L(N) = E + A*N^-alpha needs at least 3 points, got {len(n_params)}"
            )
        if sizes < 3:
            raise InputError(
                f"{where}: L(N) has 3 constants and needs points at 3 or more distinct "
                f"{variable} values; found {sizes}: add runs of other model sizes"
            )
        return
    if len(n_params) < 5:
        raise InputError(
            f"{where}: L(N, D) = E + A*N^-alpha + B*D^-beta needs at least 5 points, "
            f"got {len(n_params)}"
        )
    counts = len(np.unique(tokens))
    pairs = len({(float(n), float(d)) for n, d in zip(n_params, tokens, strict=True)})
    if sizes < 2 or counts < 2 or pairs < 5:
        raise InputError(
            f"{where}: L(N, D) needs at least 2 distinct n_params, 2 distinct tokens and 5 "
            f"distinct (n_params, tokens) pairs; found {sizes}, {counts} and {pairs}: add runs "
            "of other sizes or token budgets"
        )


def fit_scaling_law(
    n_params: np.ndarray,
    loss: np.ndarray,
    tokens: np.ndarray | None = None,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    where: str = "the results",
    variable: str = "n_params",
) -> ScalingFit:
    """Fits L(N), or L(N, D) when `tokens` is given, with bootstrap refits.

    Args:
      n_params: [P] non-embedding parameters (or another positive scale, e.g. FLOPs).
      loss: [P] losses, nats per token.
      tokens: [P] training tokens, for the two-variable law.
      bootstrap: resamples to refit (0: none); a progress bar shows above 50.
      seed: seed of the resampling.
      where, variable: how messages name the data and the `n_params` column.

    Raises:
      InputError: too few points or distinct sizes for the law (see `check_fittable`).
    """
    columns = [np.asarray(n_params, float)]
    if tokens is not None:
        columns.append(np.asarray(tokens, float))
    check_fittable(*columns, where=where, variable=variable)
    constants = 3 if tokens is None else 5
    distinct = len({tuple(row) for row in np.stack(columns, axis=1).tolist()})
    no_intervals = None
    if bootstrap and distinct <= constants:
        # Every resample that still determines the law holds each distinct point: the
        # refits would all equal the fit, and zero-width intervals would claim certainty.
        no_intervals = (
            f"{distinct} distinct points for {constants} constants: every resample refits "
            "the same law; add points for intervals"
        )
        bootstrap = 0
    log_x_PK, log_loss_P = np.log(np.stack(columns, axis=1)), np.log(np.asarray(loss, float))
    rng = np.random.default_rng(seed)
    samples = []
    # Five-parameter problems gain nothing from BLAS threads, and on a busy machine the
    # threads' hand-offs made L-BFGS-B's tiny BLAS calls about ten times slower.
    with threadpool_limits(1, user_api="blas"):
        starts = _grid_starts(log_x_PK, log_loss_P, _STARTS)
        theta, objective = _fit(log_x_PK, log_loss_P, starts)
        # A resample's optimum lies near the full data's; the best grid starts guard
        # against a resample whose optimum moved to another basin.
        refit_starts = np.vstack([theta, starts[:_BOOTSTRAP_STARTS]])
        for _ in tqdm(range(bootstrap), desc="bootstrap", disable=bootstrap <= _PROGRESS_ABOVE):
            idx = _resample(rng, columns)
            refit, _ = _fit(log_x_PK[idx], log_loss_P[idx], refit_starts)
            samples.append(_natural(refit))
    return ScalingFit(
        values=dict(zip(PARAM_NAMES, map(float, _natural(theta)), strict=False)),
        samples=np.array(samples).reshape(len(samples), len(theta)),
        n_points=len(log_loss_P),
        objective=objective,
        no_intervals=no_intervals,
    )


def _resample(rng: np.random.Generator, columns: list[np.ndarray]) -> np.ndarray:
    """Indices of a bootstrap resample that can still determine the law."""
    size = len(columns[0])
    for _ in range(1000):
        idx = rng.integers(0, size, size)
        try:
            check_fittable(*(c[idx] for c in columns))
        except InputError:
            continue
        return idx
    raise InputError(
        "bootstrap: resamples keep losing the distinct sizes the fit needs; add points"
    )


def _natural(theta: np.ndarray) -> np.ndarray:
    """[log E, log A, alpha, log B, beta] -> [E, A, alpha, B, beta] (prefix for one variable)."""
    out = np.array(theta, float)
    for i, name in enumerate(PARAM_NAMES[: len(out)]):
        if name in _LOG_SCALED:
            out[i] = math.exp(out[i])
    return out


def _terms(theta_GT: np.ndarray, log_x_PK: np.ndarray) -> np.ndarray:
    """The logsumexp terms [G, P, 1+K]: log E, then log A - alpha log N (, log B - beta log D)."""
    power_GPK = theta_GT[:, None, 1::2] - theta_GT[:, None, 2::2] * log_x_PK[None]
    log_e_GP1 = np.broadcast_to(theta_GT[:, None, :1], (*power_GPK.shape[:2], 1))
    return np.concatenate([log_e_GP1, power_GPK], axis=2)


def _log_sum_exp(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log sum exp over the last axis, softmax weights = its gradient per term)."""
    top = terms.max(axis=-1, keepdims=True)
    exp = np.exp(terms - top)
    total = exp.sum(axis=-1, keepdims=True)
    return (top + np.log(total))[..., 0], exp / total


def _huber(r: np.ndarray) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= HUBER_DELTA, 0.5 * r**2, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))


def _objective_and_grad(theta: np.ndarray, log_x_PK: np.ndarray, log_loss_P: np.ndarray):
    """Summed Huber loss of log residuals and its gradient, both divided by delta.

    Dividing by delta leaves the minimizer unchanged and keeps values near |residual|, the
    scale L-BFGS-B's tolerances expect.
    """
    log_pred_P, weights_PT = _log_sum_exp(_terms(theta[None], log_x_PK)[0])
    r_P = log_pred_P - log_loss_P
    slope_P = np.clip(r_P, -HUBER_DELTA, HUBER_DELTA) / HUBER_DELTA
    grad = np.empty_like(theta)
    grad[0] = slope_P @ weights_PT[:, 0]
    grad[1::2] = slope_P @ weights_PT[:, 1:]
    grad[2::2] = -slope_P @ (weights_PT[:, 1:] * log_x_PK)
    return float(np.sum(_huber(r_P)) / HUBER_DELTA), grad


def _grid_starts(log_x_PK: np.ndarray, log_loss_P: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` grid points [keep, 1+2K] with the smallest objective on these points."""
    e_values = log_loss_P.min() + np.log(_E_FRACTIONS)
    axes = [e_values] + [_LOG_COEFFICIENTS, _EXPONENTS] * log_x_PK.shape[1]
    grid_GT = np.array(list(itertools.product(*axes)))
    r_GP = _log_sum_exp(_terms(grid_GT, log_x_PK))[0] - log_loss_P
    order = np.argsort(np.sum(_huber(r_GP), axis=1), kind="stable")
    return grid_GT[order[:keep]]


def _fit(log_x_PK: np.ndarray, log_loss_P: np.ndarray, starts_ST: np.ndarray):
    bounds = [(None, None)] + [(None, None), _EXPONENT_BOUNDS] * log_x_PK.shape[1]
    best = None
    for start in starts_ST:
        result = optimize.minimize(
            _objective_and_grad,
            start,
            args=(log_x_PK, log_loss_P),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8},
        )
        if best is None or result.fun < best.fun:
            best = result
    return best.x, best.fun * HUBER_DELTA


@dataclasses.dataclass(frozen=True)
class Allocation:
    """The compute-optimal split of a FLOP budget under a two-variable law (C = 6 N D).

    Attributes:
      budget_flops: C.
      n_params: N_opt, non-embedding parameters.
      tokens: D_opt = C / (6 N_opt).
      loss: L(N_opt, D_opt).
      ci: bootstrap percentile intervals {'n_params', 'tokens', 'loss': (low, high)}.
    """

    budget_flops: float
    n_params: float
    tokens: float
    loss: float
    ci: dict[str, tuple[float, float]]


def optimal_allocation(values, budget_flops):
    """(N_opt, D_opt, L_opt) minimizing E + A N^-alpha + B D^-beta subject to 6 N D = C.

    Closed form: G = (alpha A / (beta B))^(1 / (alpha + beta)),
    N_opt = G (C/6)^(beta / (alpha + beta)), D_opt = G^-1 (C/6)^(alpha / (alpha + beta)).
    `values` holds E, A, alpha, B, beta (scalars or arrays); `budget_flops` broadcasts.
    """
    alpha, beta = values["alpha"], values["beta"]
    g = (alpha * values["A"] / (beta * values["B"])) ** (1 / (alpha + beta))
    n_times_d = np.asarray(budget_flops, float) / 6
    n_opt = g * n_times_d ** (beta / (alpha + beta))
    d_opt = n_times_d ** (alpha / (alpha + beta)) / g
    return n_opt, d_opt, _loss(values, n_opt, d_opt)


def compute_optimal(fit: ScalingFit, budget_flops: float, level: float = 0.95) -> Allocation:
    """The compute-optimal allocation of `budget_flops` under a two-variable `fit`."""
    if not fit.two_variable:
        raise ValueError("the allocation needs the two-variable law L(N, D)")
    if fit.values["alpha"] == 0 or fit.values["beta"] == 0:
        raise InputError(
            f"the fitted alpha={fit.values['alpha']:.3g}, beta={fit.values['beta']:.3g}: a "
            "loss that does not fall with N or D has no finite compute-optimal allocation"
        )
    n_opt, d_opt, loss = optimal_allocation(fit.values, budget_flops)
    ci = {}
    if len(fit.samples):
        # A refit with a zero exponent allocates everything to one side: inf, as it should.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            sampled = optimal_allocation(
                {n: fit.samples[:, i] for i, n in enumerate(fit.names)}, budget_flops
            )
        bounds = [50 * (1 - level), 50 * (1 + level)]
        for key, values in zip(("n_params", "tokens", "loss"), sampled, strict=True):
            low, high = np.percentile(values, bounds)
            ci[key] = (float(low), float(high))
    return Allocation(float(budget_flops), float(n_opt), float(d_opt), float(loss), ci)
