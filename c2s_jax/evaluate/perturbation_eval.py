"""Perturbation response on held-out perturbed cells, beside the control-mean and
train-mean baselines, separately for (cell type, perturbation) pairs seen in training.

Every cell, real or predicted, is compared in one representation: its top-K sentence
turned back into expression by the corpus's inverse fit. Per (cell type, perturbation)
pair of the evaluated splits, its real perturbed cells are shuffled and cut into a
reference sample (up to ``max_cells_per_pair``) and a disjoint floor sample of the same
size. For each reference cell the model gets the corpus's perturbation prompt with a
control cell drawn from its cell type and batch, and writes the perturbed cell's
sentence; the baselines predict from the same control cells (unchanged, and plus the
mean change of the training pairs).

- Mean metrics (`perturbation.perturbation_metrics`): the truth is the mean of all the
  pair's perturbed cells minus the mean of all its controls; the baselines predict from
  that control mean, so "control_mean" has exactly no change.
- Distribution metrics: MMD and scFID of each method's cells against the reference
  sample, in a PCA fitted on training-split cells, with the floor sample scored the same
  way; one kernel bandwidth per pair (the median distance among its real cells).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np
import pandas as pd
from flax import nnx

from c2s_jax.checkpoints.bundle import Bundle
from c2s_jax.corpus.prompts.formatter import GeneRun, Templates
from c2s_jax.evaluate.distribution import median_pairwise_distance
from c2s_jax.evaluate.embedders import pca_embedder
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.evaluate.perturbation import (
    METRIC_NAMES,
    PerturbationResult,
    baseline_predictions,
    distribution_scores,
    perturbation_metrics,
    results_table,
    summary_table,
    train_mean_change,
)
from c2s_jax.inference.gene_constraint import tables_for_tokenizer, tokens_for_genes
from c2s_jax.inference.generation import sentence_of
from c2s_jax.inference.sampler import Sampler, SamplingParams, complete_texts
from c2s_jax.models.parts import ModelParts


def _prompt(held: HeldOut, templates: Templates, cell: int, control: int, k: int, rng) -> str:
    fields = held.cells.fields
    entry = templates.entry("perturbation_response")
    phrase = entry["perturbation_phrase"].format(
        perturbation_type=fields["perturbation_type"][cell],
        perturbation=fields["perturbation"][cell],
    )
    for extra in ("dose", "time"):
        if extra in fields and fields[extra][cell] is not None:
            phrase += entry[extra].format(**{extra: fields[extra][cell]})
    values = {n: v[cell] for n, v in fields.items() if v[cell] is not None}
    genes = held.cells.genes
    values.update(
        cell_sentence=GeneRun(genes(control)[:k], held.symbols),
        perturbed_sentence=GeneRun(genes(cell)[:k], held.symbols),
        perturbation_phrase=phrase,
        num_genes=k,
    )
    return templates.render("perturbation_response", values, rng).prompt_text()


def _mean(matrix) -> np.ndarray:
    return np.asarray(matrix.mean(axis=0)).ravel()


def _split_sample(cells: list[int], max_cells: int, rng) -> tuple[list[int], list[int]]:
    """A reference sample of up to ``max_cells`` of ``cells`` (at least half of them) and
    a disjoint floor sample of at most as many, both sorted."""
    shuffled = rng.permutation(cells).tolist()
    n = min(max_cells, len(cells) - len(cells) // 2)
    return sorted(shuffled[:n]), sorted(shuffled[n : 2 * n])


def _generator(bundle: Bundle, k: int, cfg, symbols: list[str]):
    """A function prompts -> predicted sentences of exactly k genes; the sampler and the
    gene trie are built once for every pair."""
    graphdef, state = nnx.split(bundle.model)
    sampler = Sampler(ModelParts(graphdef, bundle.config), state, bundle.tokenizer.eos_id)
    tables = tables_for_tokenizer(bundle.tokenizer, symbols, bundle.config.vocab_size)
    # Room for the k longest genes, so every predicted cell holds exactly k genes.
    params = SamplingParams(
        max_new_tokens=tokens_for_genes(tables, k),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )

    def generate(prompts: list[str]) -> list[str]:
        sentences = []
        for start in range(0, len(prompts), cfg.batch_size):
            batch = prompts[start : start + cfg.batch_size]
            done = complete_texts(
                sampler, bundle.tokenizer, batch, params, tables=tables, num_genes=k
            )
            sentences += [sentence_of(c.text, cut_short=c.finish == "length") for c in done]
        return sentences

    return generate


def evaluate_perturbation(
    bundle: Bundle, held: HeldOut, cfg: ml_collections.ConfigDict, progress: bool = True
) -> dict:
    """Per-pair metrics of the model and the baselines, and their seen/unseen summary.

    Args:
      cfg: ``perturbation`` settings: splits, num_genes, max_cells_per_pair, temperature,
        top_p, top_de, batch_size, seed, and pca_components, pca_cells (the PCA's
        dimensions and how many training-split cells it is fitted on).

    Returns:
      {"table": rows (one per pair and method, with the mean and distribution metrics and
       the pair's real-vs-real floors), "summary": {split: {"columns", "rows"}},
       "embedder": the embedding's name, "examples": {pair: first predicted sentence}}
    """
    pairs = held.cells.controls
    k = cfg.num_genes
    fields = held.cells.fields
    cell_type = fields.get("cell_type", np.full(len(pairs.group_of_cell), "all", object))
    held_cells = set(held.split_cells(*cfg.splits).tolist())
    train_split = held.split_cells("train")
    train_cells = set(train_split.tolist())
    rng = np.random.default_rng(cfg.seed)
    templates = Templates.load()

    def pair_of(cell):
        return str(cell_type[cell]), str(fields["perturbation"][cell])

    def reconstructed_mean(cells) -> np.ndarray:
        return _mean(held.reconstructed(np.asarray(cells), k))

    train_pairs: dict[tuple[str, str], list[int]] = {}
    test_pairs: dict[tuple[str, str], list[int]] = {}
    for cell in pairs.perturbed.tolist():
        if cell in train_cells:
            train_pairs.setdefault(pair_of(cell), []).append(cell)
        elif cell in held_cells:
            test_pairs.setdefault(pair_of(cell), []).append(cell)
    if not test_pairs:
        raise ValueError("no held-out perturbed cell with a matching control")

    def control_mean(cells) -> np.ndarray:
        groups = {int(pairs.group_of_cell[c]) for c in cells}
        controls = np.concatenate([pairs.controls_by_group[g] for g in sorted(groups)])
        return reconstructed_mean(controls)

    train_true = np.stack([reconstructed_mean(c) for c in train_pairs.values()])
    train_control = np.stack([control_mean(c) for c in train_pairs.values()])
    train_change = train_mean_change(train_true, train_control)

    pca_cells = min(cfg.pca_cells, len(train_split))
    fitted_on = np.sort(rng.choice(train_split, pca_cells, replace=False))
    pca = pca_embedder(
        held.reconstructed(fitted_on, k),
        n_components=min(cfg.pca_components, pca_cells - 1),
        seed=cfg.seed,
    )
    generate = _generator(bundle, k, cfg, [str(s) for s in held.symbols])
    results, examples = [], {}
    for pair, cells in sorted(test_pairs.items()):
        reference, floor = _split_sample(cells, cfg.max_cells_per_pair, rng)
        controls = [pairs.draw_control(c, rng) for c in reference]
        prompts = [
            _prompt(held, templates, c, control, k, rng)
            for c, control in zip(reference, controls, strict=True)
        ]
        sentences = generate(prompts)
        examples[" / ".join(pair)] = sentences[0]
        control_cells = held.reconstructed(np.asarray(controls), k).toarray()
        predicted_cells = {
            "model": held.expression_of(sentences).toarray(),
            **baseline_predictions(control_cells, train_change),
        }
        true, control = reconstructed_mean(cells), control_mean(cells)
        predicted_means = {
            "model": predicted_cells["model"].mean(axis=0),
            **baseline_predictions(control, train_change),
        }
        reference_x = pca(held.reconstructed(np.asarray(reference), k))
        floor_x = pca(held.reconstructed(np.asarray(floor), k)) if len(floor) >= 2 else None
        scored = len(reference) >= 2
        if scored:
            real_x = reference_x if floor_x is None else np.concatenate([reference_x, floor_x])
            bandwidth = median_pairwise_distance(real_x, seed=cfg.seed)
        floor_scores = None
        if scored and floor_x is not None:
            floor_scores = distribution_scores(reference_x, floor_x, bandwidth)
        for method, mean in predicted_means.items():
            metrics = perturbation_metrics(mean, true, control, top_de=cfg.top_de)
            scores = None
            if scored:
                scores = distribution_scores(reference_x, pca(predicted_cells[method]), bandwidth)
            results.append(
                PerturbationResult(pair[1], pair[0], method, metrics, scores, floor_scores)
            )
    table = results_table(results, train_pairs.keys())
    summary = summary_table(table)
    by_split = {}
    for (method, split), row in summary.iterrows():
        entry = by_split.setdefault(split, {"columns": list(summary.columns), "rows": {}})
        entry["rows"][method] = [float(v) for v in row.to_numpy()]
    return {
        "table": table.to_dict(orient="records"),
        "summary": by_split,
        "embedder": pca.name,
        "examples": examples,
    }


METHOD_LABELS = {
    "model": "model",
    "control_mean": "control unchanged",
    "train_mean": "control + mean training shift",
}


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def per_pair_markdown(result: dict) -> list[str]:
    """Markdown lines: one table per evaluated (cell type, perturbation) pair, a row per
    method and a last row with the real-vs-real floor of the distribution metrics.

    Args:
      result: from `evaluate_perturbation`.
    """
    table = pd.DataFrame(result["table"])
    columns = [*METRIC_NAMES, "mmd", "scfid"]
    lines = [
        f"MMD and scFID in {result['embedder']} of training-split cells; the floor compares "
        "two disjoint samples of the pair's real perturbed cells.",
        "",
    ]
    for (cell_type, perturbation), rows in table.groupby(["cell_type", "perturbation"]):
        seen = "seen" if rows["seen"].iloc[0] else "unseen"
        lines += [
            f"#### {cell_type}, {perturbation} ({seen} in training)",
            "",
            "| method | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for _, row in rows.iterrows():
            label = METHOD_LABELS.get(row["method"], row["method"])
            lines.append(f"| {label} | " + " | ".join(_fmt(row[c]) for c in columns) + " |")
        floor = rows.iloc[0]
        blanks = [""] * len(METRIC_NAMES)
        lines.append(
            "| real (noise floor) | "
            + " | ".join([*blanks, _fmt(floor["mmd_floor"]), _fmt(floor["scfid_floor"])])
            + " |"
        )
        lines.append("")
    return lines
