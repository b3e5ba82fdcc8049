"""The evaluation report: report.md with every metric beside its baseline or noise floor,
metrics.json with the same numbers, and PNG figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from c2s_jax.atomic_write import atomic_path, write_text_atomic
from c2s_jax.plots import plt


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _annotation_section(results: dict) -> list[str]:
    lines = ["## Annotation", ""]
    if not results:
        return [*lines, "No annotation field (cell type, tissue) in the dataset.", ""]
    for task, result in results.items():
        lines += [
            f"### {task} ({result['n_cells']} held-out cells, {result['n_labels']} labels)",
            "",
            "| method | accuracy | macro-F1 |",
            "|---|---|---|",
        ]
        for method, scores in result["methods"].items():
            lines.append(f"| {method} | {_fmt(scores['accuracy'])} | {_fmt(scores['macro_f1'])} |")
        lines += ["", "First answers (truth -> model):", ""]
        lines += [f"- {e['truth']} -> `{e['answer'].strip()[:80]}`" for e in result["examples"]]
        lines.append("")
    return lines


POOLED_METRICS = ("n", "mmd[median]", "knn_accuracy", "mean_expression_r")


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
    for key in [*scfid_keys, *POOLED_METRICS]:
        lines.append(f"| {key} | {_fmt(gen[key])} | {_fmt(floor[key])} |")
    validity = result["validity"]
    lines += [
        f"| valid gene fraction | {_fmt(validity['valid_fraction'])} | 1 |",
        f"| duplicate gene fraction | {_fmt(validity['duplicate_fraction'])} | 0 |",
        f"| genes per cell | {_fmt(result['genes_per_cell'])} | |",
        "",
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
    return lines


def plot_generation(result: dict, path: Path) -> None:
    """PCA map of held-out and generated cells, and per-condition mean-expression r."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    ref, gen = result["map"]["reference"], result["map"]["generated"]
    left.scatter(ref[:, 0], ref[:, 1], s=8, c="lightgrey", label="held-out real")
    labels = np.asarray(result["map"]["generated_labels"])
    for name in sorted(set(labels)):
        at = labels == name
        left.scatter(gen[at, 0], gen[at, 1], s=10, label=f"generated: {name}")
    left.set_title("PCA of held-out real and generated cells")
    left.legend(fontsize=6)
    rows = result["per_condition"]
    names = list(rows)
    x = np.arange(len(names))
    right.bar(x - 0.2, [rows[n]["generated_r"] for n in names], 0.4, label="generated")
    right.bar(x + 0.2, [rows[n]["floor_r"] for n in names], 0.4, label="real (noise floor)")
    right.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    right.set_ylabel("Pearson r of mean expression vs held-out")
    right.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_annotation(results: dict, path: Path) -> None:
    """Accuracy and macro-F1 of every method, per task."""
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), dpi=110, squeeze=False)
    for ax, (task, result) in zip(axes[0], results.items(), strict=True):
        methods = list(result["methods"])
        x = np.arange(len(methods))
        ax.bar(x - 0.2, [result["methods"][m]["accuracy"] for m in methods], 0.4, label="accuracy")
        ax.bar(x + 0.2, [result["methods"][m]["macro_f1"] for m in methods], 0.4, label="macro-F1")
        ax.set_xticks(x, methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
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
