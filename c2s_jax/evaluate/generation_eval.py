"""Conditioned generation against held-out real cells, with a real-vs-real noise floor.

For each condition value (a cell type) with enough held-out cells, the model generates
cells from the corpus's generation prompt. Every cell, real or generated, is compared in
one representation: its top-K sentence turned back into expression by the corpus's
inverse fit (what a generated cell is). The reference is the held-out cells; the noise
floor is the same number of training-split cells of the same condition, i.e. what a
generator that draws real cells would score at this sample size.
"""

from __future__ import annotations

import dataclasses
import warnings

import ml_collections
import numpy as np
import scipy.sparse as sp

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.evaluate.distribution import (
    knn_label_accuracy,
    mean_expression_correlation,
    mmd_rbf,
    valid_gene_fraction,
)
from c2s_jax.evaluate.embedders import pca_embedder
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.evaluate.scfid import frechet_distance
from c2s_jax.inference.embeddings import CellEmbedder
from c2s_jax.inference.generation import generate_cells
from c2s_jax.inference.requests import CellRequest
from c2s_jax.inference.sampler import SamplingParams


@dataclasses.dataclass(frozen=True)
class ModelExpressionEmbedder:
    """The model's cell embedding of expression rows: genes ranked by value, then embedded
    by :class:`~c2s_jax.inference.embeddings.CellEmbedder` (its name says which model)."""

    embedder: CellEmbedder
    symbols: np.ndarray
    name: str

    def __call__(self, expression: sp.spmatrix | np.ndarray) -> np.ndarray:
        rows = sp.csr_matrix(expression)
        cells = []
        for i in range(rows.shape[0]):
            row = rows.getrow(i)
            order = row.indices[np.argsort(-row.data, kind="stable")]
            cells.append(self.symbols[order])
        return self.embedder(cells)


@dataclasses.dataclass
class Samples:
    """Cells of one comparison side, in the shared representation."""

    expression: sp.csr_matrix  # [n, genes]
    labels: np.ndarray  # [n] condition of each cell (intended, for generated cells)


def _distances(reference: Samples, other: Samples, embedders, train: Samples, cfg) -> dict:
    """Every metric of ``other`` against ``reference``."""
    out = {"n": int(other.expression.shape[0])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for embedder in embedders:
            ref, oth = embedder(reference.expression), embedder(other.expression)
            out[f"scfid[{embedder.name}]"] = frechet_distance(ref, oth)
    out["rank_deficient"] = any(
        "fewer" in str(w.message) or "rank" in str(w.message) for w in caught
    )
    pca = embedders[-1]
    mmd = mmd_rbf(pca(reference.expression), pca(other.expression), seed=cfg.seed)
    out["mmd[median]"] = list(mmd.values())[len(mmd) // 2]
    out["mmd"] = {f"{s:.3g}": v for s, v in mmd.items()}
    out["knn_accuracy"] = knn_label_accuracy(
        pca(train.expression), train.labels, pca(other.expression), other.labels, k=cfg.knn_k
    )
    out["mean_expression_r"] = mean_expression_correlation(reference.expression, other.expression)
    return out


def evaluate_generation(
    bundle: Bundle, held: HeldOut, cfg: ml_collections.ConfigDict, progress: bool = True
) -> dict:
    """Generation metrics, pooled over conditions and per condition, beside the floor.

    Args:
      cfg: ``generation`` settings: field, splits, cells_per_condition, min_cells,
        num_genes, temperature, top_k, top_p, pca_components, knn_k, seed.

    Returns:
      {"pooled": {"generated": metrics, "real (noise floor)": metrics},
       "per_condition": {value: {...}}, "validity": {...}, "embedders": [...],
       "pca_coords": arrays for the figure}
    """
    field, k = cfg.field, cfg.num_genes
    held_cells = held.split_cells(*cfg.splits)
    held_labels = held.labels(field, held_cells)
    train_cells = held.split_cells("train")
    train_labels = held.labels(field, train_cells)
    values, counts = np.unique(held_labels[held_labels != None], return_counts=True)  # noqa: E711
    conditions = [str(v) for v, c in zip(values, counts, strict=True) if c >= cfg.min_cells]
    conditions = [c for c in conditions if np.sum(train_labels == c) >= 2]
    if not conditions:
        raise ValueError(
            f"no {field} has {cfg.min_cells} held-out cells; lower generation.min_cells"
        )
    params = SamplingParams(
        max_new_tokens=2 * k + 8,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )
    n = cfg.cells_per_condition
    requests = [CellRequest(c, None, {field: c}) for c in conditions]
    generated = generate_cells(
        bundle, requests, n, params, num_genes=k, constrain=True, progress=progress
    )
    rng = np.random.default_rng(cfg.seed)
    sides = {"reference": [], "generated": [], "floor": []}
    for condition in conditions:
        ref = held_cells[held_labels == condition]
        pool = train_cells[train_labels == condition]
        floor = rng.choice(pool, min(n, len(pool)), replace=False)
        sides["reference"].append((held.reconstructed(ref, k), [condition] * len(ref)))
        sides["floor"].append((held.reconstructed(floor, k), [condition] * len(floor)))
    gen_matrix = held.expression_of(generated.sentences)
    sides["generated"] = [(gen_matrix, generated.requests)]
    reference, floor, gen = (_stack(sides[s]) for s in ("reference", "floor", "generated"))
    known = train_labels != None  # noqa: E711
    train = Samples(held.reconstructed(train_cells[known], k), np.asarray(train_labels[known], str))

    pca = pca_embedder(
        sp.vstack([train.expression, reference.expression]),
        n_components=min(cfg.pca_components, train.expression.shape[0] - 1),
        seed=cfg.seed,
    )
    model_embedder = ModelExpressionEmbedder(
        CellEmbedder(bundle, top_k=k), held.symbols, f"model {bundle.path.name}"
    )
    embedders = [model_embedder, pca]
    pooled = {
        "generated": _distances(reference, gen, embedders, train, cfg),
        "real (noise floor)": _distances(reference, floor, embedders, train, cfg),
    }
    pooled["within noise floor"] = within_noise_floor(
        pooled["generated"], pooled["real (noise floor)"]
    )
    per_condition = {}
    for condition in conditions:
        ref_c, gen_c, floor_c = (_subset(s, condition) for s in (reference, gen, floor))
        per_condition[condition] = {
            "n_reference": int(ref_c.expression.shape[0]),
            "generated_r": mean_expression_correlation(ref_c.expression, gen_c.expression),
            "floor_r": mean_expression_correlation(ref_c.expression, floor_c.expression),
            "generated_knn": knn_label_accuracy(
                pca(train.expression),
                train.labels,
                pca(gen_c.expression),
                gen_c.labels,
                k=cfg.knn_k,
            ),
            "floor_knn": knn_label_accuracy(
                pca(train.expression),
                train.labels,
                pca(floor_c.expression),
                floor_c.labels,
                k=cfg.knn_k,
            ),
        }
    words = [s.split() for s in generated.sentences]
    validity = valid_gene_fraction(words, [str(s) for s in held.symbols])
    return {
        "field": field,
        "conditions": conditions,
        "embedders": [e.name for e in embedders],
        "pooled": pooled,
        "per_condition": per_condition,
        "validity": dataclasses.asdict(validity),
        "genes_per_cell": float(np.mean([len(w) for w in words])),
        "examples": {c: s for c, s in zip(generated.requests, generated.sentences, strict=True)},
        "map": {
            "reference": pca(reference.expression)[:, :2],
            "generated": pca(gen.expression)[:, :2],
            "generated_labels": gen.labels,
            "reference_labels": reference.labels,
            "variance_ratio": pca.explained_variance_ratio_K[:2],
        },
    }


# Pooled metrics by which way is closer to the real cells.
SMALLER_IS_CLOSER = ("scfid[", "mmd[")
LARGER_IS_CLOSER = ("mean_expression_r", "knn_accuracy")


def within_noise_floor(generated: dict, floor: dict) -> dict[str, bool]:
    """{metric: whether the generated cells score at or past the real-vs-real floor}.

    The floor is itself the sampling noise of a set of this size, so a generated value
    beyond it (a smaller distance, a larger correlation) means "indistinguishable from
    real cells at this sample size", not "better than real".
    """
    flags = {}
    for key, value in generated.items():
        if key.startswith(SMALLER_IS_CLOSER):
            flags[key] = bool(value <= floor[key])
        elif key in LARGER_IS_CLOSER:
            flags[key] = bool(value >= floor[key])
    return flags


def _stack(parts: list[tuple[sp.spmatrix, list[str]]]) -> Samples:
    return Samples(
        sp.csr_matrix(sp.vstack([m for m, _ in parts])),
        np.asarray([label for _, labels in parts for label in labels], str),
    )


def _subset(samples: Samples, label: str) -> Samples:
    at = samples.labels == label
    return Samples(samples.expression[at], samples.labels[at])
