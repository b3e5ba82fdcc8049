"""One evaluation run: load the model and its held-out data, run every enabled part,
write the report."""

from __future__ import annotations

import time
from pathlib import Path

import ml_collections

from c2s_jax.evaluate.annotation_eval import evaluate_annotation
from c2s_jax.evaluate.generation_eval import evaluate_generation
from c2s_jax.evaluate.held_out import load_held_out
from c2s_jax.evaluate.perturbation_eval import evaluate_perturbation
from c2s_jax.evaluate.report import write_report
from c2s_jax.model_bundle import load_bundle


def run_evaluation(cfg: ml_collections.ConfigDict, out_dir: str | Path, progress: bool = True):
    """Evaluates ``cfg.checkpoint`` and writes ``out_dir/report.md``; returns
    (report path, results dict)."""
    began = time.perf_counter()
    bundle = load_bundle(cfg.checkpoint)
    held = load_held_out(bundle, cfg.dataset or None)
    results, skipped = {}, {}
    if cfg.annotation.enabled:
        results["annotation"] = evaluate_annotation(bundle, held, cfg.annotation, progress)
    if not cfg.generation.enabled:
        skipped["generation"] = "disabled in config (generation.enabled)"
    elif cfg.generation.field not in held.cells.fields:
        skipped["generation"] = f"the dataset has no '{cfg.generation.field}' field"
    else:
        results["generation"] = evaluate_generation(bundle, held, cfg.generation, progress)
    if not cfg.perturbation.enabled:
        skipped["perturbation"] = "disabled in config (perturbation.enabled)"
    elif held.cells.controls is None:
        skipped["perturbation"] = (
            f"dataset '{held.cells.spec.name}' has no perturbation column "
            "(datasets[].perturbation_key in the corpus config)"
        )
    else:
        results["perturbation"] = evaluate_perturbation(bundle, held, cfg.perturbation, progress)
    splits = ", ".join(f"{s}: {len(held.split_cells(s))}" for s in ("train", "validation", "test"))
    header = {
        "model": str(bundle.path),
        "dataset": f"{held.cells.spec.name} ({held.cells.spec.path})",
        "cells": f"{len(held.cells.sentences)} ({splits})",
        "seconds": round(time.perf_counter() - began, 1),
    }
    report = write_report(Path(out_dir), header, results, skipped)
    return report, results


def summary_lines(results: dict) -> list[str]:
    """The headline numbers of an evaluation, one line per task, for the terminal."""
    lines = []
    for task, result in results.get("annotation", {}).items():
        scores = ", ".join(f"{m} {s['accuracy']:.3f}" for m, s in result["methods"].items())
        lines.append(f"{task} accuracy: {scores}")
    if "generation" in results:
        pooled = results["generation"]["pooled"]
        for key in (k for k in pooled["generated"] if k.startswith("scfid[")):
            lines.append(
                f"generation {key}: {pooled['generated'][key]:.4g} "
                f"(real-vs-real floor {pooled['real (noise floor)'][key]:.4g})"
            )
    for split, table in results.get("perturbation", {}).get("summary", {}).items():
        column = table["columns"].index("pearson_delta")
        scores = ", ".join(f"{m} {v[column]:.3f}" for m, v in table["rows"].items())
        lines.append(f"perturbation ({split}) Pearson of change: {scores}")
    return lines
