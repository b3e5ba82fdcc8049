"""One evaluation run: load the model and its held-out data, run every enabled part,
write the report and the per-cell predictions."""

from __future__ import annotations

import time
from pathlib import Path

import ml_collections

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.evaluate.annotation_eval import METHOD_SUFFIXES, evaluate_annotation
from c2s_jax.evaluate.confidence import headline
from c2s_jax.evaluate.generation_eval import evaluate_generation
from c2s_jax.evaluate.held_out import load_held_out
from c2s_jax.evaluate.perturbation_eval import evaluate_perturbation
from c2s_jax.evaluate.predictions import join_tables, predictions_adata, write_predictions
from c2s_jax.evaluate.qa_eval import corpus_qa, evaluate_question_answering
from c2s_jax.evaluate.report import write_report

PREDICTIONS_FILE = "predictions.h5ad"


def run_evaluation(cfg: ml_collections.ConfigDict, out_dir: str | Path, progress: bool = True):
    """Evaluates ``cfg.checkpoint`` and writes ``out_dir/report.md`` (with metrics.json,
    figures and predictions.h5ad); returns (report path, results dict)."""
    began = time.perf_counter()
    bundle = load_bundle(cfg.checkpoint)
    held = load_held_out(bundle, cfg.dataset or None)
    results, skipped, tables = {}, {}, []
    if cfg.annotation.enabled:
        results["annotation"], table = evaluate_annotation(bundle, held, cfg.annotation, progress)
        tables.append(table)
    qa_weight, _ = corpus_qa(bundle)
    if "question_answering" not in cfg:
        skipped["question_answering"] = "the evaluation config has no question_answering part"
    elif not cfg.question_answering.enabled:
        skipped["question_answering"] = "disabled in config (question_answering.enabled)"
    elif qa_weight <= 0:
        skipped["question_answering"] = "the model's corpus has no question answering examples"
    else:
        qa, table = evaluate_question_answering(bundle, held, cfg.question_answering, progress)
        results["question_answering"] = qa
        tables.append(table)
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
    out_dir = Path(out_dir)
    predictions = join_tables(tables)
    if len(predictions):
        notes = {
            "methods": {suffix: method for method, suffix in METHOD_SUFFIXES.items()},
            "scores": "*_score_likelihood: log-likelihood (natural log) of the chosen answer; "
            "*_score_logreg, *_score_knn: the classifier's probability of its label",
        }
        vocabulary = bundle.dataset(cfg.dataset or None).get("vocabulary", {})
        write_predictions(
            out_dir / PREDICTIONS_FILE, predictions_adata(held, predictions, vocabulary, notes)
        )
        header["predictions"] = f"{PREDICTIONS_FILE} ({len(predictions)} cells)"
    report = write_report(out_dir, header, results, skipped)
    return report, results


def _accuracy(scores: dict) -> str:
    low, high = scores["ci95"]
    return f"{scores['accuracy']:.3f} [{low:.2f}, {high:.2f}]"


def summary_lines(results: dict) -> list[str]:
    """The headline numbers of an evaluation, one line per task, for the terminal
    (accuracies with their 95% interval in brackets)."""
    lines = []
    for task, result in results.get("annotation", {}).items():
        scores = ", ".join(f"{m} {_accuracy(s)}" for m, s in result["methods"].items())
        notes = "".join(f" ({headline(n)})" for n in result["notes"])
        lines.append(f"{task} accuracy{notes}: {scores}")
    for kind, result in results.get("question_answering", {}).items():
        scores = ", ".join(f"{m} {_accuracy(s)}" for m, s in result["methods"].items())
        lines.append(f"question {kind} accuracy: {scores}; chance {result['chance']:.3f}")
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
