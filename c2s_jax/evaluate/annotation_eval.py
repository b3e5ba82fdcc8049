"""Cell type annotation and tissue inference on held-out cells, beside expression baselines.

Every held-out cell gets the corpus's own prompt for the task (a wording drawn with the
evaluation seed, its top-K genes). The model answers twice: by greedy generation, and by
ranking every label seen in training by likelihood (zero-shot classification). The
baselines (logistic regression, kNN, the majority label) learn from the training split's
expression and predict the same cells.
"""

from __future__ import annotations

import collections

import ml_collections
import numpy as np
from flax import nnx

from c2s_jax.data.prompts.formatter import GeneRun, Templates
from c2s_jax.evaluate.annotation import (
    exact_match_accuracy,
    knn_baseline,
    logistic_regression_baseline,
    macro_f1,
)
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.model_bundle import Bundle
from c2s_jax.sample import Sampler, SamplingParams, complete_texts
from c2s_jax.scoring import Scorer, rank_candidates
from c2s_jax.train.state import ModelParts

# The task's template name and the field it answers.
TASKS = {"cell_type_annotation": "cell_type", "tissue_inference": "tissue"}


def annotation_prompts(
    held: HeldOut, task: str, cells: np.ndarray, top_k: int, seed: int
) -> list[str]:
    """The corpus prompt of ``task`` for each cell (one cell per prompt)."""
    templates = Templates.load()
    rng = np.random.default_rng(seed)
    prompts = []
    for cell in cells:
        run = GeneRun(held.cells.genes(cell)[:top_k], held.symbols)
        fields = {
            name: values[cell]
            for name, values in held.cells.fields.items()
            if values[cell] is not None
        }
        fields.update(
            cell_sentence=run,
            cell_sentences=[run],
            num_genes=len(run.gene_ids),
            num_cells=1,
        )
        prompts.append(templates.render(task, fields, rng).prompt_text())
    return prompts


def answer_label(text: str) -> str:
    """The label in a completion: its first line."""
    return text.strip().split("\n")[0]


def evaluate_annotation(
    bundle: Bundle, held: HeldOut, cfg: ml_collections.ConfigDict, progress: bool = True
) -> dict:
    """Scores of the model and the baselines on every annotation task the data supports.

    Args:
      bundle: the model.
      held: its held-out data.
      cfg: ``annotation`` settings: splits (evaluated), top_k, max_cells, synonyms,
        max_new_tokens, zero_shot, knn_k, seed.

    Returns:
      {task: {"n_cells", "methods": {method: {"accuracy", "macro_f1"}}, "examples": [...]}}
    """
    graphdef, state = nnx.split(bundle.model)
    parts = ModelParts(graphdef, bundle.config)
    sampler = Sampler(parts, state, bundle.tokenizer.eos_id)
    scorer = Scorer(parts, state)
    synonyms = dict(cfg.synonyms)
    train_cells = held.split_cells("train")
    results = {}
    for task, field in TASKS.items():
        if field not in held.cells.fields:
            continue
        cells = held.split_cells(*cfg.splits)
        cells = cells[held.labels(field, cells) != None]  # noqa: E711 (object array)
        if cfg.max_cells and len(cells) > cfg.max_cells:
            rng = np.random.default_rng(cfg.seed)
            cells = np.sort(rng.choice(cells, cfg.max_cells, replace=False))
        truth = [str(x) for x in held.labels(field, cells)]
        prompts = annotation_prompts(held, task, cells, cfg.top_k, cfg.seed)
        greedy = SamplingParams(max_new_tokens=cfg.max_new_tokens)
        answers = []
        for start in range(0, len(prompts), cfg.batch_size):
            batch = prompts[start : start + cfg.batch_size]
            answers += complete_texts(sampler, bundle.tokenizer, batch, greedy)
        predicted = [answer_label(a.text) for a in answers]
        train_labels = held.labels(field, train_cells)
        known = train_labels != None  # noqa: E711
        methods = {"model (generation)": _scores(predicted, truth, synonyms)}
        if cfg.zero_shot:
            candidates = sorted({str(x) for x in train_labels[known]})
            _, best = rank_candidates(
                scorer, bundle.tokenizer, prompts, [[f"{c}." for c in candidates]] * len(prompts)
            )
            methods["model (likelihood)"] = _scores([candidates[i] for i in best], truth, synonyms)
        train_x = held.expression[train_cells[known]]
        train_y = [str(x) for x in train_labels[known]]
        test_x = held.expression[cells]
        if len(set(train_y)) > 1:
            lr = logistic_regression_baseline(train_x, train_y, test_x, truth, seed=cfg.seed)
            knn = knn_baseline(train_x, train_y, test_x, truth, k=cfg.knn_k)
            methods["logistic regression"] = _scores(list(lr.predicted), truth, synonyms)
            methods["kNN"] = _scores(list(knn.predicted), truth, synonyms)
        majority = collections.Counter(train_y).most_common(1)[0][0]
        methods["majority label"] = _scores([majority] * len(truth), truth, synonyms)
        results[task] = {
            "n_cells": len(cells),
            "n_labels": len(set(truth)),
            "methods": methods,
            "examples": [
                {"truth": t, "answer": a.text} for t, a in zip(truth[:5], answers[:5], strict=True)
            ],
        }
    return results


def _scores(predicted, truth, synonyms) -> dict[str, float]:
    return {
        "accuracy": exact_match_accuracy(predicted, truth, synonyms),
        "macro_f1": macro_f1(predicted, truth, synonyms),
    }
