"""From ranks back to expression: expression ~ a + b * log10(1 + rank).

Expression (log10(1 + normalized counts)) falls almost linearly in log-rank, so one line
fitted on a sample of cells turns any sentence, generated ones included, back into an
expression vector. The fit is stored with the sentences so that later stages invert
without refitting.
"""

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import scipy.stats

from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import write_text_atomic

# C2S fits on log10(1 + rank) < 3, i.e. 0-based ranks below 999.
DEFAULT_MAX_RANK = 999


@dataclasses.dataclass(frozen=True)
class InverseFit:
    """A fitted rank -> expression line and how well it reconstructs expression.

    Attributes:
      slope, intercept: expression = intercept + slope * log10(1 + rank), rank 0-based.
      r2: coefficient of determination of the reconstruction (1 - SS_res / SS_tot).
      pearson, spearman: correlation of reconstructed with true expression.
      n_cells: cells in the sample; n_points: expressed genes the metrics cover.
      max_rank: ranks below it entered the line fit.

    The line is fitted on ranks < max_rank; the metrics cover every expressed gene of the
    sampled cells, as in the C2S reference evaluation.
    """

    slope: float
    intercept: float
    r2: float
    pearson: float
    spearman: float
    n_cells: int
    n_points: int
    max_rank: int

    def expression(self, rank: np.ndarray) -> np.ndarray:
        """Expression at (possibly fractional) 0-based ranks, clipped at 0 (never negative)."""
        return np.maximum(self.intercept + self.slope * np.log10(1.0 + np.asarray(rank)), 0.0)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the fit as JSON, atomically."""
        write_text_atomic(path, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "InverseFit":
        """Reads a fit written by `save` (or the `inverse_fit` entry of corpus metadata)."""
        try:
            with open(path, encoding="utf-8") as file:
                fields = json.load(file)
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read an inverse fit ({err})") from None
        fields = fields.get("inverse_fit", fields)
        missing = {f.name for f in dataclasses.fields(cls)} - set(fields)
        if missing:
            raise InputError(f"{path}: inverse fit lacks fields {sorted(missing)}")
        return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls)})


def fit_inverse(cells: Sequence[np.ndarray], max_rank: int = DEFAULT_MAX_RANK) -> InverseFit:
    """Fits expression ~ a + b*log10(1 + rank) by least squares.

    Args:
      cells: per cell, its expressed (> 0) normalized expression values sorted descending,
        so that position r holds the value at 0-based rank r.
      max_rank: only ranks below it enter the fit.
    """
    if not cells or not any(len(c) for c in cells):
        raise InputError("cannot fit the inverse transform: no expressed genes in the sample")
    values = np.concatenate([np.asarray(c, np.float64) for c in cells])
    log_rank = np.concatenate([np.log10(1.0 + np.arange(len(c))) for c in cells])
    in_fit = log_rank < np.log10(1.0 + max_rank)
    slope, intercept = np.polyfit(log_rank[in_fit], values[in_fit], deg=1)
    predicted = intercept + slope * log_rank
    residual = np.sum((values - predicted) ** 2)
    total = np.sum((values - values.mean()) ** 2)
    return InverseFit(
        slope=float(slope),
        intercept=float(intercept),
        r2=float(1.0 - residual / total) if total > 0 else float("nan"),
        pearson=_correlation(scipy.stats.pearsonr, values, predicted),
        spearman=_correlation(scipy.stats.spearmanr, values, predicted),
        n_cells=len(cells),
        n_points=int(values.size),
        max_rank=int(max_rank),
    )


def _correlation(method, x: np.ndarray, y: np.ndarray) -> float:
    # A constant side (e.g. every sampled gene tied) has no defined correlation.
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(method(x, y).statistic)


def sentence_ranks(
    words: Sequence[str], symbol_index: dict[str, int]
) -> tuple[dict[int, float], int]:
    """Rank of each known gene in a sentence, and the number of unknown words.

    Words are upper-cased. An unknown word keeps its slot (the genes after it keep their
    ranks, as in the C2S reference) but yields no gene; a gene that occurs several times
    takes the mean of its positions.

    Returns:
      ({symbol id: 0-based rank (float)}, n_unknown).
    """
    positions: dict[int, list[int]] = {}
    unknown = 0
    for position, word in enumerate(words):
        gene = symbol_index.get(word.upper())
        if gene is None:
            unknown += 1
        else:
            positions.setdefault(gene, []).append(position)
    return {gene: float(np.mean(pos)) for gene, pos in positions.items()}, unknown


def reconstruct(
    sentences: Sequence[str], fit: InverseFit, symbols: Sequence[str]
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Expression matrix from sentences.

    Args:
      sentences: [N] space-separated gene symbols.
      fit: the inverse fit of the corpus.
      symbols: [S] the vocabulary: columns of the output.

    Returns:
      (csr [N, S] float32 reconstructed log10(1+x) expression, unknown [N] int64 count of
      words that are not in the vocabulary).
    """
    symbol_index = {str(s).upper(): i for i, s in enumerate(symbols)}
    rows, cols, vals = [], [], []
    unknown = np.zeros(len(sentences), np.int64)
    for i, sentence in enumerate(sentences):
        ranks, unknown[i] = sentence_ranks(sentence.split(), symbol_index)
        if ranks:
            genes = np.fromiter(ranks.keys(), np.int64, len(ranks))
            rows.append(np.full(len(genes), i))
            cols.append(genes)
            vals.append(fit.expression(np.fromiter(ranks.values(), np.float64, len(ranks))))
    if not rows:
        return sp.csr_matrix((len(sentences), len(symbols)), dtype=np.float32), unknown
    matrix = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(sentences), len(symbols)),
    )
    matrix.eliminate_zeros()
    return matrix, unknown
