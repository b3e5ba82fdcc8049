"""Perturbation response on held-out perturbed cells, beside the control-mean and
train-mean baselines, separately for (cell type, perturbation) pairs seen in training.

For each held-out perturbed cell the model gets the corpus's perturbation prompt with a
matching control cell (same cell type and batch) and writes the perturbed cell's
sentence. Means are taken in the shared representation (top-K sentences through the
inverse fit) over the cells of each (cell type, perturbation) pair.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from flax import nnx

from c2s_jax.data.prompts.formatter import GeneRun, Templates
from c2s_jax.evaluate.held_out import HeldOut
from c2s_jax.evaluate.perturbation import (
    PerturbationResult,
    baseline_predictions,
    perturbation_metrics,
    results_table,
    summary_table,
    train_mean_change,
)
from c2s_jax.gene_constraint import tables_for_tokenizer
from c2s_jax.generation import sentence_of
from c2s_jax.model_bundle import Bundle
from c2s_jax.sample import Sampler, SamplingParams, complete_texts
from c2s_jax.train.state import ModelParts


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


def evaluate_perturbation(
    bundle: Bundle, held: HeldOut, cfg: ml_collections.ConfigDict, progress: bool = True
) -> dict:
    """Per-pair metrics of the model and the baselines, and their seen/unseen summary.

    Args:
      cfg: ``perturbation`` settings: splits, num_genes, max_cells_per_pair, temperature,
        top_p, top_de, batch_size, seed.

    Returns:
      {"table": rows (one per pair and method), "summary": {split: {"columns", "rows"}}}
    """
    pairs = held.cells.controls
    k = cfg.num_genes
    fields = held.cells.fields
    cell_type = fields.get("cell_type", np.full(len(pairs.group_of_cell), "all", object))
    held_cells = set(held.split_cells(*cfg.splits).tolist())
    train_cells = set(held.split_cells("train").tolist())
    perturbed = pairs.perturbed
    rng = np.random.default_rng(cfg.seed)
    templates = Templates.load()

    def pair_of(cell):
        return str(cell_type[cell]), str(fields["perturbation"][cell])

    def reconstructed_mean(cells) -> np.ndarray:
        return _mean(held.reconstructed(np.asarray(cells), k))

    train_pairs: dict[tuple[str, str], list[int]] = {}
    test_pairs: dict[tuple[str, str], list[int]] = {}
    for cell in perturbed.tolist():
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

    graphdef, state = nnx.split(bundle.model)
    sampler = Sampler(ModelParts(graphdef, bundle.config), state, bundle.tokenizer.eos_id)
    symbols = [str(s) for s in held.symbols]
    tables = tables_for_tokenizer(bundle.tokenizer, symbols, bundle.config.vocab_size)
    params = SamplingParams(
        max_new_tokens=2 * k + 8, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed
    )
    results = []
    for pair, cells in sorted(test_pairs.items()):
        chosen = cells
        if len(chosen) > cfg.max_cells_per_pair:
            chosen = sorted(rng.choice(cells, cfg.max_cells_per_pair, replace=False).tolist())
        prompts = [_prompt(held, templates, c, pairs.draw_control(c, rng), k, rng) for c in chosen]
        sentences = []
        for start in range(0, len(prompts), cfg.batch_size):
            batch = prompts[start : start + cfg.batch_size]
            done = complete_texts(sampler, bundle.tokenizer, batch, params, tables=tables)
            sentences += [sentence_of(c.text, cut_short=c.finish == "length") for c in done]
        predicted = _mean(held.expression_of(sentences))
        true, control = reconstructed_mean(cells), control_mean(cells)
        predictions = {"model": predicted, **baseline_predictions(control, train_change)}
        for method, mean in predictions.items():
            metrics = perturbation_metrics(mean, true, control, top_de=cfg.top_de)
            results.append(PerturbationResult(pair[1], pair[0], method, metrics))
    table = results_table(results, train_pairs.keys())
    summary = summary_table(table)
    by_split = {}
    for (method, split), row in summary.iterrows():
        entry = by_split.setdefault(split, {"columns": list(summary.columns), "rows": {}})
        entry["rows"][method] = [float(v) for v in row.to_numpy()]
    return {"table": table.to_dict(orient="records"), "summary": by_split}
