"""The scaling-law figure: loss against parameters and against compute, with fitted laws.

Left: loss vs non-embedding parameters N, the points and the fitted L(N) (for the
two-variable law, L(N, D) at a few of the sweep's token counts). Right: loss vs training
FLOPs, the points and either a one-variable law in C or, for L(N, D), the compute-optimal
frontier L(N_opt(C), D_opt(C)) with C = 6 N D. Shaded: the bootstrap percentile band.
"""

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on TPU VMs or CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from c2s_jax.scaling.law import ScalingFit, ScalingPoint, optimal_allocation
from c2s_jax.storage.atomic import atomic_path

_CURVE_POINTS = 200


def plot_scaling(
    points: Sequence[ScalingPoint],
    losses: np.ndarray,
    fit: ScalingFit,
    path: str | os.PathLike,
    *,
    compute_fit: ScalingFit | None = None,
    level: float = 0.95,
    title: str = "",
) -> None:
    """Writes the two-panel PNG.

    Args:
      points: the sweep's points (their n_params, tokens and flops place them).
      losses: [P] the fitted losses (overall or one task's), in the order of `points`.
      fit: L(N) or L(N, D) fitted to them.
      path: the .png to write.
      compute_fit: for a one-variable `fit`, the law L(C) fitted to (flops, losses), drawn
        on the compute panel; unused for L(N, D), whose frontier is drawn instead.
      level: the band's coverage.
      title: the figure title (e.g. the file and the loss).
    """
    if not fit.two_variable and compute_fit is None:
        raise ValueError("a one-variable fit needs compute_fit for the compute panel")
    n_params = np.array([p.n_params for p in points])
    tokens = np.array([p.tokens for p in points])
    flops = np.array([p.flops for p in points])
    if fit.two_variable:
        # The frontier assumes C = 6ND; points placed by their recorded FLOPs (attention and
        # unembedding included, most of the compute of small models) would sit beside it.
        flops = 6.0 * n_params * tokens
    fig, (ax_n, ax_c) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    n_grid = _span(n_params)
    c_grid = _span(flops)
    if fit.two_variable:
        norm = LogNorm(tokens.min(), tokens.max() * (1 + 1e-9))
        colors = plt.get_cmap("viridis")
        for ax, x in ((ax_n, n_params), (ax_c, flops)):
            ax.scatter(x, losses, c=tokens, cmap=colors, norm=norm, s=18, zorder=3)
        for d in _representative(np.unique(tokens)):
            _curve(ax_n, fit, n_grid, d, level, colors(norm(d)), f"D = {d:.3g} tokens")
        fig.colorbar(plt.cm.ScalarMappable(norm, colors), ax=ax_c, label="training tokens D")
        values = fit.values
        samples = {n: fit.samples[:, i, None] for i, n in enumerate(fit.names)}
        # A zero exponent has no finite allocation: its curve is left out (nan), not drawn.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            frontier = optimal_allocation(values, c_grid)[2]
            band = optimal_allocation(samples, c_grid[None])[2] if len(fit.samples) else None
        _draw(ax_c, c_grid, frontier, band, level, "black", "compute-optimal, C = 6ND")
    else:
        ax_n.scatter(n_params, losses, s=18, zorder=3, color="tab:blue")
        ax_c.scatter(flops, losses, s=18, zorder=3, color="tab:blue")
        _curve(ax_n, fit, n_grid, None, level, "tab:orange", _label(fit, "N"))
        _curve(ax_c, compute_fit, c_grid, None, level, "tab:orange", _label(compute_fit, "C"))
    ax_n.set_xlabel("non-embedding parameters N")
    ax_c.set_xlabel("training compute C = 6ND" if fit.two_variable else "training FLOPs C")
    for ax in (ax_n, ax_c):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if fit.two_variable:
        ax_n.set_title(_label(fit, "N"), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _span(x: np.ndarray) -> np.ndarray:
    return np.geomspace(x.min() / 1.5, x.max() * 1.5, _CURVE_POINTS)


def _representative(values: np.ndarray) -> np.ndarray:
    """Up to three of the sorted distinct values: smallest, middle, largest."""
    return values[sorted({0, len(values) // 2, len(values) - 1})]


def _label(fit: ScalingFit, x: str) -> str:
    v = fit.values
    text = f"L = {v['E']:.3g} + {v['A']:.3g}·{x}^-{v['alpha']:.3g}"
    if fit.two_variable:
        text += f" + {v['B']:.3g}·D^-{v['beta']:.3g}"
    return text


def _curve(ax, fit: ScalingFit, x_grid, tokens, level: float, color, label: str) -> None:
    band = fit.predict_samples(x_grid, tokens) if len(fit.samples) else None
    _draw(ax, x_grid, fit.predict(x_grid, tokens), band, level, color, label)


def _draw(ax, x, y, band_SX, level: float, color, label: str) -> None:
    ax.plot(x, y, color=color, lw=1.8, label=label)
    if band_SX is not None:
        low, high = np.percentile(band_SX, [50 * (1 - level), 50 * (1 + level)], axis=0)
        ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)
