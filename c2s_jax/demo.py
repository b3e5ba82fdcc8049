"""The main job on the embedded data: pbmc68k counts -> h5ad -> cell sentences -> inverse
fit -> reconstruction, with a printed summary and a PNG of the fit."""

import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from c2s_jax.atomic_write import atomic_path
from c2s_jax.data.cell_sentences import SentenceOptions
from c2s_jax.data.embedded import pbmc68k_counts
from c2s_jax.data.inverse import InverseFit, reconstruct
from c2s_jax.data.normalization import log1p10_normalize
from c2s_jax.data.sentence_files import read_sentences, write_sentences
from c2s_jax.plots import plot_inverse_fit

OBS_KEYS = ("cell_type", "tissue", "organism")


def run_demo(workdir: str, seed: int = 0) -> dict:
    """Runs the data stage on pbmc68k_reduced and prints what came out.

    Returns the figures it prints (cells, vocabulary size, fit, reconstruction quality).
    """
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    adata = pbmc68k_counts()
    h5ad = out / "pbmc68k_counts.h5ad"
    with atomic_path(h5ad) as tmp:
        adata.write_h5ad(tmp)
    print(f"embedded data: {adata.n_obs} cells x {adata.n_vars} genes of raw counts -> {h5ad}")

    with warnings.catch_warnings():
        # pbmc68k_reduced keeps 765 genes of 700 cells: rows are cells, not a transposition.
        warnings.filterwarnings("ignore", message=".*may be transposed", category=UserWarning)
        summary = write_sentences(
            [h5ad],
            out / "pbmc68k_sentences.parquet",
            SentenceOptions(seed=seed),
            OBS_KEYS,
            progress=False,
        )
    table, meta = read_sentences(summary.table)
    fit = InverseFit(**meta["inverse_fit"])
    lengths = table["cell_sentence"].str.count(" ") + 1
    print(
        f"cell sentences: {len(table)} cells -> {summary.table} "
        f"({summary.n_cells / summary.seconds:,.0f} cells/s)"
    )
    print(
        f"  genes per sentence: median {int(lengths.median())}, "
        f"range {lengths.min()}-{lengths.max()}; vocabulary {len(meta['vocabulary'])} symbols"
    )
    first = table.iloc[0]
    print(
        f"  {first['cell_name']} ({first['cell_type']}): "
        f"{' '.join(first['cell_sentence'].split()[:12])} ..."
    )
    print(
        f"inverse fit over {fit.n_cells} cells: expression = {fit.intercept:.3f} "
        f"{fit.slope:+.3f} * log10(1 + rank); R2 {fit.r2:.3f}, Pearson {fit.pearson:.3f}, "
        f"Spearman {fit.spearman:.3f}"
    )

    truth = _true_expression(adata, meta["target_sum"])
    rebuilt, unknown = reconstruct(
        table["cell_sentence"].tolist(), fit, adata.var_names.str.upper()
    )
    per_cell = [_pearson(truth[i], rebuilt[i]) for i in range(truth.shape[0])]
    print(
        "reconstruction from sentences: median per-cell Pearson over expressed genes "
        f"{np.median(per_cell):.3f}, {int(unknown.sum())} unknown words"
    )
    cells = [np.sort(r.data)[::-1] for r in truth[: fit.n_cells]]
    plot_inverse_fit(cells, fit, out / "inverse_fit.png")
    print(f"figure: {out / 'inverse_fit.png'}")
    return {"n_cells": len(table), "fit": fit, "median_pearson": float(np.median(per_cell))}


def _true_expression(adata, target_sum: float) -> sp.csr_matrix:
    counts = sp.csr_matrix(adata.X)
    return log1p10_normalize(counts, np.asarray(counts.sum(axis=1)).ravel(), target_sum)


def _pearson(truth: sp.csr_matrix, rebuilt: sp.csr_matrix) -> float:
    # Over the truly expressed genes only: zeros are trivially right and would inflate it.
    expressed = truth.indices
    return float(np.corrcoef(truth.data, rebuilt.toarray().ravel()[expressed])[0, 1])
