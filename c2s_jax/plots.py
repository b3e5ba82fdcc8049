"""PNG figures for reports: written atomically, rendered without a display."""

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on TPU VMs or CI
import matplotlib.pyplot as plt
import numpy as np

from c2s_jax.sentences.inverse import InverseFit
from c2s_jax.storage.atomic import atomic_path


def plot_inverse_fit(cells: Sequence[np.ndarray], fit: InverseFit, path: str | os.PathLike) -> None:
    """Expression against log10(1 + rank) for sampled cells, with the fitted line.

    Args:
      cells: per cell, expressed values sorted descending (position = 0-based rank).
      fit: the fitted line and its metrics (shown in the title).
      path: the .png to write.
    """
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for values in cells:
        ax.scatter(np.log10(1 + np.arange(len(values))), values, s=1, alpha=0.15, color="tab:blue")
    x = np.linspace(0, np.log10(1 + max(len(v) for v in cells)), 100)
    ax.plot(x, fit.intercept + fit.slope * x, color="tab:orange", lw=2, label="fit")
    ax.set_xlabel("log10(1 + rank)")
    ax.set_ylabel("log10(1 + normalized expression)")
    ax.set_title(f"R² {fit.r2:.3f}   Pearson {fit.pearson:.3f}   Spearman {fit.spearman:.3f}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_embedding(
    coords: np.ndarray, labels: Sequence[str], title: str, path: str | os.PathLike
) -> None:
    """A 2-D map of cells (e.g. UMAP or PCA of embeddings), one color per label.

    Args:
      coords: [n, 2] coordinates.
      labels: [n] label of each cell.
      title: names the embedding and the projection.
      path: the .png to write.
    """
    labels = np.asarray(labels, dtype=str)
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=120)
    for name in sorted(set(labels)):
        at = labels == name
        ax.scatter(coords[at, 0], coords[at, 1], s=6, alpha=0.8, label=f"{name} ({at.sum()})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
