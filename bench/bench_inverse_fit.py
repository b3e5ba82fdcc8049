"""Inverse-transform fit on pbmc68k_reduced: ours beside the cell2sentence procedure.

Both fit expression ~ a + b*log10(1 + rank) on every cell of the embedded data (counts
recovered from .raw, normalize_total, log10(1 + x)); the reference is cell2sentence's
benchmark procedure (its rank matrix and data frame, sklearn's LinearRegression on
log10(1 + rank) < 3, metrics over all expressed genes). Also times both.

    .venv/bin/python bench/bench_inverse_fit.py
"""

import sys
from pathlib import Path

import numpy as np
import scanpy as sc
import scipy.sparse as sp
import scipy.stats
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import median_seconds, update_section


def main() -> None:
    from cell2sentence.utils import get_benchmark_df, sort_transcript_counts

    from c2s_jax.sentences.cell_sentences import cell_sentences
    from c2s_jax.sentences.embedded import pbmc68k_counts

    counts = pbmc68k_counts()
    normalized = counts.copy()
    sc.pp.normalize_total(normalized)
    sc.pp.log1p(normalized, base=10)
    dense = np.asarray(sp.csr_matrix(normalized.X).todense())

    def reference():
        ranks = sort_transcript_counts(dense)
        df = get_benchmark_df(dense, ranks)
        x = df["log_rank_normalized_expression"].to_numpy()
        y = df["normalized_expression"].to_numpy()
        line = LinearRegression().fit(x[x < 3].reshape(-1, 1), y[x < 3])
        predicted = line.predict(x.reshape(-1, 1))
        return {
            "slope": line.coef_[0],
            "intercept": line.intercept_,
            "r2": r2_score(y, predicted),
            "pearson": scipy.stats.pearsonr(y, predicted).statistic,
            "spearman": scipy.stats.spearmanr(y, predicted).statistic,
        }

    def ours():
        return cell_sentences(counts, fit_cells=counts.n_obs).fit

    ref, ours_fit = reference(), ours()
    ref_s, _ = median_seconds(reference, 3)
    ours_s, _ = median_seconds(ours, 3)
    names = ("slope", "intercept", "r2", "pearson", "spearman")
    for name in names:
        print(f"{name:10s} ours {getattr(ours_fit, name):.4f}  cell2sentence {ref[name]:.4f}")
    print(f"time: ours {ours_s:.2f} s (sentences + fit), reference {ref_s:.2f} s (fit only)")
    lines = [
        "## Inverse fit on pbmc68k_reduced (700 cells, all used)",
        "",
        "Command: `.venv/bin/python bench/bench_inverse_fit.py`. Counts recovered as "
        "round(expm1(raw.X) * n_counts / 1e4), then normalize_total and log10(1 + x). "
        "Peer: cell2sentence 1.2.0's benchmark procedure on the same normalized matrix.",
        "",
        "| | slope | intercept | R² | Pearson | Spearman |",
        "|---|---:|---:|---:|---:|---:|",
        "| c2s-jax | " + " | ".join(f"{getattr(ours_fit, n):.4f}" for n in names) + " |",
        "| cell2sentence | " + " | ".join(f"{ref[n]:.4f}" for n in names) + " |",
        "",
        f"Fit over {ours_fit.n_points:,} expressed (cell, gene) points. Time, median of 3: "
        f"c2s-jax {ours_s:.2f} s for sentences and fit together, cell2sentence {ref_s:.2f} s "
        f"for the fit alone ({ref_s / ours_s:.1f}x). The reference tutorial's two-donor immune "
        "dataset reports R² 0.795 and Pearson 0.930; pbmc68k_reduced keeps only 765 "
        "genes (a median of 243 expressed per cell), so ranks are short and the line fits better.",
    ]
    update_section("bench_inverse_fit", "\n".join(lines))


if __name__ == "__main__":
    main()
