"""Cell type annotation and tissue inference on held-out cells, beside expression baselines.

Every held-out cell gets the corpus's own prompt for the task (a wording drawn with the
evaluation seed, its top-K genes). The model answers twice: by greedy generation, and by
ranking every label seen in training by likelihood (zero-shot classification). The
baselines (logistic regression, kNN, the majority label) learn from the training split's
expression and predict the same cells. Every accuracy carries its 95% Wilson interval and
the notes that qualify it (one label, too few cells); every cell's answers come back too.
"""

from __future__ import annotations

import collections

import ml_collections
import numpy as np
import pandas as pd
from flax import nnx

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.prompts.formatter import GeneRun, Templates
from c2s_jax.evaluate.annotation import (
    correct_answers,
    knn_baseline,
    logistic_regression_baseline,
    macro_f1,
)
from c2s_jax.evaluate.confidence import accuracy_with_interval, reliability_notes
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.evaluate.predictions import join_tables
from c2s_jax.inference.sampler import Sampler, SamplingParams, complete_texts
from c2s_jax.inference.scoring import Scorer, rank_candidates
from c2s_jax.models.parts import ModelParts

# The task's template name and the field it answers.
TASKS = {"cell_type_annotation": "cell_type", "tissue_inference": "tissue"}
# How predictions.h5ad names each method in its obs columns ({field}_pred_{suffix}).
METHOD_SUFFIXES = {
    "model (generation)": "generation",
    "model (likelihood)": "likelihood",
    "logistic regression": "logreg",
    "kNN": "knn",
    "majority label": "majority",
}


def evaluated_cells(
    held: HeldOut, splits, max_cells: int, seed: int, field: str | None = None
) -> np.ndarray:
    """[n] sorted held-out cells a task is scored on: the named splits' cells (with a
    ``field`` value, when given), at most ``max_cells`` of them drawn with ``seed``."""
    cells = held.split_cells(*splits)
    if field is not None:
        cells = cells[held.labels(field, cells) != None]  # noqa: E711 (object array)
    if max_cells and len(cells) > max_cells:
        rng = np.random.default_rng(seed)
        cells = np.sort(rng.choice(cells, max_cells, replace=False))
    return cells


def cell_fields(held: HeldOut, cell: int, top_k: int) -> dict:
    """The template fields of one cell as the corpus writes them: its labels and its
    top-``top_k`` sentence (alone and as a one-cell list)."""
    run = GeneRun(held.cells.genes(cell)[:top_k], held.symbols)
    fields = {
        name: values[cell] for name, values in held.cells.fields.items() if values[cell] is not None
    }
    fields.update(cell_sentence=run, cell_sentences=[run], num_genes=len(run.gene_ids), num_cells=1)
    return fields


def annotation_prompts(
    held: HeldOut, task: str, cells: np.ndarray, top_k: int, seed: int
) -> list[str]:
    """The corpus prompt of ``task`` for each cell (one cell per prompt)."""
    templates = Templates.load()
    rng = np.random.default_rng(seed)
    return [
        templates.render(task, cell_fields(held, cell, top_k), rng).prompt_text() for cell in cells
    ]


def answer_label(text: str) -> str:
    """The label in a completion: its first line."""
    return text.strip().split("\n")[0]


def evaluate_annotation(
    bundle: Bundle, held: HeldOut, cfg: ml_collections.ConfigDict, progress: bool = True
) -> tuple[dict, pd.DataFrame]:
    """Scores of the model and the baselines on every annotation task the data supports.

    Args:
      bundle: the model.
      held: its held-out data.
      cfg: ``annotation`` settings: splits (evaluated), top_k, max_cells, synonyms,
        max_new_tokens, zero_shot, knn_k, seed.

    Returns:
      (results, predictions). results: {task: {"n_cells", "n_labels", "notes": [...],
      "methods": {method: {"accuracy", "ci95": [low, high], "n_correct", "macro_f1"}},
      "examples": [...]}}. predictions: one row per evaluated cell (index: cell index in
      ``held``), columns ``{field}`` (truth) and ``{field}_pred_{suffix}``,
      ``{field}_correct_{suffix}`` per method (suffixes: METHOD_SUFFIXES), the model's
      raw answer ``{field}_answer_generation``, and ``{field}_score_{suffix}``: the
      likelihood method's log-likelihood (natural log) of its chosen label, the
      classifiers' probability of theirs.
    """
    graphdef, state = nnx.split(bundle.model)
    parts = ModelParts(graphdef, bundle.config)
    sampler = Sampler(parts, state, bundle.tokenizer.eos_id)
    scorer = Scorer(parts, state)
    synonyms = dict(cfg.synonyms)
    train_cells = held.split_cells("train")
    results, tables = {}, []
    for task, field in TASKS.items():
        if field not in held.cells.fields:
            continue
        cells = evaluated_cells(held, cfg.splits, cfg.max_cells, cfg.seed, field)
        if len(cells) == 0:
            continue
        truth = [str(x) for x in held.labels(field, cells)]
        prompts = annotation_prompts(held, task, cells, cfg.top_k, cfg.seed)
        greedy = SamplingParams(max_new_tokens=cfg.max_new_tokens)
        answers = []
        for start in range(0, len(prompts), cfg.batch_size):
            batch = prompts[start : start + cfg.batch_size]
            answers += complete_texts(sampler, bundle.tokenizer, batch, greedy)
        table = pd.DataFrame({field: truth}, index=cells)
        table[f"{field}_answer_generation"] = [a.text for a in answers]
        predictions = {"model (generation)": ([answer_label(a.text) for a in answers], None)}
        train_labels = held.labels(field, train_cells)
        known = train_labels != None  # noqa: E711
        if cfg.zero_shot:
            candidates = sorted({str(x) for x in train_labels[known]})
            scores, best = rank_candidates(
                scorer, bundle.tokenizer, prompts, [[f"{c}." for c in candidates]] * len(prompts)
            )
            chosen = [float(s[b]) for s, b in zip(scores, best, strict=True)]
            predictions["model (likelihood)"] = ([candidates[i] for i in best], chosen)
        train_x = held.expression[train_cells[known]]
        train_y = [str(x) for x in train_labels[known]]
        test_x = held.expression[cells]
        if len(set(train_y)) > 1:
            lr = logistic_regression_baseline(train_x, train_y, test_x, truth, seed=cfg.seed)
            knn = knn_baseline(train_x, train_y, test_x, truth, k=cfg.knn_k)
            predictions["logistic regression"] = (list(lr.predicted), list(lr.confidence))
            predictions["kNN"] = (list(knn.predicted), list(knn.confidence))
        majority = collections.Counter(train_y).most_common(1)[0][0]
        predictions["majority label"] = ([majority] * len(truth), None)
        methods = {}
        for method, (predicted, score) in predictions.items():
            suffix = METHOD_SUFFIXES[method]
            correct = correct_answers(predicted, truth, synonyms)
            table[f"{field}_pred_{suffix}"] = [str(p) for p in predicted]
            table[f"{field}_correct_{suffix}"] = correct
            if score is not None:
                table[f"{field}_score_{suffix}"] = np.asarray(score, np.float64)
            methods[method] = {
                **accuracy_with_interval(correct),
                "macro_f1": macro_f1(predicted, truth, synonyms),
            }
        tables.append(table)
        results[task] = {
            "n_cells": len(cells),
            "n_labels": len(set(truth)),
            "notes": reliability_notes(truth),
            "methods": methods,
            "examples": [
                {"truth": t, "answer": a.text} for t, a in zip(truth[:5], answers[:5], strict=True)
            ],
        }
    return results, join_tables(tables)
