"""The evaluation report: report.md with every metric beside its baseline or noise floor
(accuracies with their 95% intervals and the notes that qualify them), metrics.json with
the same numbers, and PNG figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from c2s_jax.evaluate.confidence import TRIVIAL_NOTE
from c2s_jax.evaluate.perturbation_eval import per_pair_markdown
from c2s_jax.plots import plt
from c2s_jax.storage.atomic import atomic_path, write_text_atomic


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _accuracy(scores: dict) -> str:
    """'0.833 [0.64, 0.93]': the accuracy and its 95% Wilson interval."""
    low, high = scores["ci95"]
    return f"{scores['accuracy']:.3f} [{low:.2f}, {high:.2f}]"


def _notes(notes: list[str]) -> list[str]:
    return [*(f"> **Note:** {n}." for n in notes), ""] if notes else []


INTERVAL_LINE = (
    "Accuracies carry their 95% Wilson score interval in brackets: the range of true "
    "accuracies these cells are consistent with."
)


def _annotation_section(results: dict) -> list[str]:
    lines = ["## Annotation", ""]
    if not results:
        return [*lines, "No annotation field (cell type, tissue) in the dataset.", ""]
    lines += [INTERVAL_LINE, ""]
    for task, result in results.items():
        lines += [
            f"### {task} ({result['n_cells']} held-out cells, "
            f"{_count(result['n_labels'], 'label')})",
            "",
            *_notes(result["notes"]),
            "| method | accuracy [95% CI] | macro-F1 |",
            "|---|---|---|",
        ]
        for method, scores in result["methods"].items():
            lines.append(f"| {method} | {_accuracy(scores)} | {_fmt(scores['macro_f1'])} |")
        lines += ["", "First answers (truth -> model):", ""]
        lines += [f"- {e['truth']} -> `{e['answer'].strip()[:80]}`" for e in result["examples"]]
        lines.append("")
    return lines


QA_KIND_WORDS = {
    "most_expressed": "which of the options is the most expressed gene",
    "is_expressed": "is this gene expressed (yes / no)",
    "cell_type_choice": "which of the options is the cell type",
}


def _qa_section(results: dict | None, skipped: str | None) -> list[str]:
    lines = ["## Question answering", ""]
    if results is None:
        return [*lines, f"Not run: {skipped}", ""]
    if not results:
        return [*lines, "No question could be asked of the held-out cells.", ""]
    lines += [
        "One question of each kind per held-out cell, built as the corpus builds them; the "
        "answer is exact-match correct (case and final period aside). Chance is what "
        "guessing among the options scores. " + INTERVAL_LINE,
        "",
        "| question kind | questions | options | chance | model (generation) "
        "| model (likelihood) |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for kind, result in results.items():
        methods = result["methods"]
        lines.append(
            f"| {kind}: {QA_KIND_WORDS.get(kind, kind)} | {result['n_questions']} | "
            f"{result['n_options']} | {result['chance']:.3f} | "
            f"{_accuracy(methods['model (generation)'])} | "
            f"{_accuracy(methods['model (likelihood)'])} |"
        )
        notes += [f"{kind}: {n}" for n in result["notes"]]
    return [*lines, "", *_notes(notes), "![question answering](question_answering.png)", ""]


POOLED_METRICS = ("n", "mmd[median]", "knn_accuracy", "mean_expression_r")
WITHIN_FLOOR_MARK = "(within noise floor)"
WITHIN_FLOOR_LINE = (
    f"{WITHIN_FLOOR_MARK}: the generated cells score at or past the real-vs-real floor. The "
    "floor is itself the sampling noise of a set this small, so this means "
    '"indistinguishable from real cells at this sample size", not "better than real".'
)


def _generation_section(result: dict | None, skipped: str | None) -> list[str]:
    lines = ["## Conditioned generation", ""]
    if result is None:
        return [*lines, f"Not run: {skipped}", ""]
    pooled = result["pooled"]
    gen, floor = pooled["generated"], pooled["real (noise floor)"]
    scfid_keys = [k for k in gen if k.startswith("scfid[")]
    lines += [
        f"Conditions: {len(result['conditions'])} values of `{result['field']}`. All cells are "
        "compared as their top-K sentences through the inverse fit; the noise floor is "
        "training-split real cells of the same conditions, as many as generated.",
        "",
        "| metric (pooled over conditions) | generated | real (noise floor) |",
        "|---|---|---|",
    ]
    within = pooled.get("within noise floor", {})
    for key in [*scfid_keys, *POOLED_METRICS]:
        mark = f" {WITHIN_FLOOR_MARK}" if within.get(key) else ""
        lines.append(f"| {key} | {_fmt(gen[key])}{mark} | {_fmt(floor[key])} |")
    validity = result["validity"]
    lines += [
        f"| valid gene fraction | {_fmt(validity['valid_fraction'])} | 1 |",
        f"| duplicate gene fraction | {_fmt(validity['duplicate_fraction'])} | 0 |",
        f"| genes per cell | {_fmt(result['genes_per_cell'])} | |",
        "",
    ]
    if any(within.get(key) for key in [*scfid_keys, *POOLED_METRICS]):
        lines += [WITHIN_FLOOR_LINE, ""]
    lines += [
        f"Embedders: {', '.join(result['embedders'])}."
        + (
            " Some covariances are rank-deficient (fewer cells than dimensions)."
            if gen["rank_deficient"]
            else ""
        ),
        "",
        "| condition | held-out cells | mean-expression r (gen) | r (floor) "
        "| kNN acc (gen) | kNN acc (floor) |",
        "|---|---|---|---|---|---|",
    ]
    for condition, row in result["per_condition"].items():
        lines.append(
            f"| {condition} | {row['n_reference']} | {_fmt(row['generated_r'])} | "
            f"{_fmt(row['floor_r'])} | {_fmt(row['generated_knn'])} | {_fmt(row['floor_knn'])} |"
        )
    return [*lines, "", "![generation](generation.png)", ""]


def _perturbation_section(result: dict | None, skipped: str | None) -> list[str]:
    lines = ["## Perturbation response", ""]
    if result is None:
        return [*lines, f"Not run: {skipped}", ""]
    for group, table in result["summary"].items():
        lines += [f"### {group}", "", "| method | " + " | ".join(table["columns"]) + " |"]
        lines.append("|---" * (len(table["columns"]) + 1) + "|")
        for method, values in table["rows"].items():
            lines.append(f"| {method} | " + " | ".join(_fmt(v) for v in values) + " |")
        lines.append("")
    if "embedder" in result:
        lines += ["### Per held-out pair", "", *per_pair_markdown(result), ""]
    return lines


def plot_generation(result: dict, path: Path) -> None:
    """Held-out real and generated cells in one PCA map, coloured by condition (real:
    filled, generated: hollow rings of the same colour), and per-condition mean-expression
    r beside the noise floor."""
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.5), dpi=110, gridspec_kw={"width_ratios": [1.2, 1]}
    )
    drawn = result["map"]
    ref, gen = np.asarray(drawn["reference"]), np.asarray(drawn["generated"])
    ref_labels = np.asarray(drawn["reference_labels"])
    gen_labels = np.asarray(drawn["generated_labels"])
    names = sorted(set(ref_labels) | set(gen_labels))
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for i, name in enumerate(names):
        colour = colours(i % colours.N)
        real_at, gen_at = ref_labels == name, gen_labels == name
        left.scatter(ref[real_at, 0], ref[real_at, 1], s=14, color=colour, alpha=0.6, lw=0)
        left.scatter(
            gen[gen_at, 0], gen[gen_at, 1], s=30, facecolors="none", edgecolors=[colour], lw=1.2
        )
        left.scatter(
            [],
            [],
            s=30,
            color=colour,
            label=f"{name} (real {int(real_at.sum())}, generated {int(gen_at.sum())})",
        )
    left.scatter([], [], s=14, color="grey", label="filled: held-out real cell")
    left.scatter([], [], s=30, facecolors="none", edgecolors="grey", label="ring: generated cell")
    ratio = drawn.get("variance_ratio", [np.nan, np.nan])
    left.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% variance)")
    left.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% variance)")
    left.set_title(f"Real and generated cells by {result['field']} (PCA of real cells)")
    left.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    rows = result["per_condition"]
    conditions = list(rows)
    x = np.arange(len(conditions))
    right.bar(x - 0.2, [rows[n]["generated_r"] for n in conditions], 0.4, label="generated")
    right.bar(x + 0.2, [rows[n]["floor_r"] for n in conditions], 0.4, label="real (noise floor)")
    right.set_xticks(x, conditions, rotation=45, ha="right", fontsize=7)
    right.set_xlabel(result["field"])
    right.set_ylabel("Pearson r of mean expression vs held-out")
    right.set_title("Mean expression per condition")
    right.legend()
    fig.tight_layout()
    _save(fig, path)


def _with_errors(scores: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """([n] accuracies, [2, n] distances to their interval ends): what ``bar(yerr=)`` takes."""
    values = np.array([s["accuracy"] for s in scores])
    low_high = np.array([s["ci95"] for s in scores]).reshape(-1, 2)
    return values, np.abs(np.stack([values - low_high[:, 0], low_high[:, 1] - values]))


def plot_annotation(results: dict, path: Path) -> None:
    """Accuracy (with 95% intervals) and macro-F1 of every method, per task; a trivial
    task (one label) says so in its title."""
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), dpi=110, squeeze=False)
    for ax, (task, result) in zip(axes[0], results.items(), strict=True):
        methods = list(result["methods"])
        scores = [result["methods"][m] for m in methods]
        x = np.arange(len(methods))
        values, errors = _with_errors(scores)
        ax.bar(x - 0.2, values, 0.4, yerr=errors, capsize=3, label="accuracy (95% CI)")
        ax.bar(x + 0.2, [s["macro_f1"] for s in scores], 0.4, label="macro-F1")
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score")
        title = f"{task} ({result['n_cells']} cells, {_count(result['n_labels'], 'label')})"
        if any(n.startswith(TRIVIAL_NOTE) for n in result["notes"]):
            title = f"{task}: TRIVIAL (one label)"
            ax.set_facecolor("#f2f2f2")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_question_answering(results: dict, path: Path) -> None:
    """Accuracy of generation and likelihood per question kind, with 95% intervals, and
    each kind's chance level as a dashed line."""
    fig, ax = plt.subplots(figsize=(2.4 * len(results) + 2, 4), dpi=110)
    kinds = list(results)
    x = np.arange(len(kinds))
    for offset, method in ((-0.2, "model (generation)"), (0.2, "model (likelihood)")):
        scores = [results[k]["methods"][method] for k in kinds]
        values, errors = _with_errors(scores)
        ax.bar(x + offset, values, 0.4, yerr=errors, capsize=3, label=f"{method} (95% CI)")
    for i, kind in enumerate(kinds):
        chance = results[kind]["chance"]
        ax.hlines(chance, i - 0.45, i + 0.45, colors="k", linestyles="dashed")
    ax.plot([], [], "k--", label="chance")
    ax.set_xticks(x, [f"{k}\n({results[k]['n_questions']} questions)" for k in kinds], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Question answering on held-out cells")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def write_report(out_dir: Path, header: dict, results: dict, skipped: dict) -> Path:
    """Writes report.md, metrics.json and the figures into ``out_dir``; returns report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Evaluation of {header['model']}", ""]
    lines += [f"- {k}: {v}" for k, v in header.items() if k != "model"]
    lines.append("")
    annotation = results.get("annotation", {})
    lines += _annotation_section(annotation)
    if annotation:
        plot_annotation(annotation, out_dir / "annotation.png")
        lines += ["![annotation](annotation.png)", ""]
    qa = results.get("question_answering")
    lines += _qa_section(qa, skipped.get("question_answering"))
    if qa:
        plot_question_answering(qa, out_dir / "question_answering.png")
    generation = results.get("generation")
    lines += _generation_section(generation, skipped.get("generation"))
    if generation is not None:
        plot_generation(generation, out_dir / "generation.png")
    lines += _perturbation_section(results.get("perturbation"), skipped.get("perturbation"))
    report = out_dir / "report.md"
    write_text_atomic(report, "\n".join(lines))
    serializable = json.loads(json.dumps(results, default=_jsonable))
    write_text_atomic(out_dir / "metrics.json", json.dumps({**header, **serializable}, indent=1))
    return report


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
