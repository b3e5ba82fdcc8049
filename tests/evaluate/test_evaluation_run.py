"""`c2s eval` end to end on the shared pbmc68k model, and the perturbation part on a small
Perturb-seq-like corpus."""

import json

import anndata
import numpy as np
import pytest
from scipy.stats import binomtest

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.cli import main
from c2s_jax.config_loading import load_config
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.records import build_corpus
from c2s_jax.evaluate.annotation import log_normalized, normalize_labels
from c2s_jax.evaluate.held_out import load_held_out
from c2s_jax.evaluate.perturbation_eval import evaluate_perturbation
from c2s_jax.train.loop import train
from tests.support.corpus_helpers import (
    SHIFTED_GENE,
    perturb_dataset,
    perturb_seq_adata,
    scratch_dir,
    small_config,
)
from tests.support.trained_model import ROOT, pbmc_train_config, pbmc_workdir

EVAL_CONFIG = ROOT / "configs" / "eval" / "pbmc68k.py"


@pytest.mark.slow
@pytest.mark.integration
def test_eval_writes_every_metric_beside_its_baseline_and_floor(tmp_path, capsys):
    out = tmp_path / "report"
    small = [
        f"--config.checkpoint={pbmc_workdir()}",
        "--config.annotation.max_cells=24",
        "--config.question_answering.max_cells=24",
        "--config.generation.cells_per_condition=4",
        "--config.generation.num_genes=12",
        "--config.generation.min_cells=6",
    ]
    assert main(["eval", "--config", str(EVAL_CONFIG), "--out", str(out), *small]) == 0
    assert "report:" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    cell_type = metrics["annotation"]["cell_type_annotation"]
    assert cell_type["n_cells"] == 24
    methods = cell_type["methods"]
    assert set(methods) == {
        "model (generation)",
        "model (likelihood)",
        "logistic regression",
        "kNN",
        "majority label",
    }
    # The expression baselines learn pbmc68k's cell types well beyond the majority label.
    assert methods["logistic regression"]["accuracy"] > methods["majority label"]["accuracy"] + 0.2
    generation = metrics["generation"]
    pooled = generation["pooled"]
    for side in ("generated", "real (noise floor)"):
        assert {"scfid[pca20]", "mmd[median]", "knn_accuracy", "mean_expression_r"} <= set(
            pooled[side]
        )
    assert generation["validity"]["valid_fraction"] == 1.0
    assert generation["validity"]["duplicate_fraction"] == 0.0
    # Real held-out cells against real training cells: the floor is the closer match.
    assert pooled["real (noise floor)"]["mean_expression_r"] > 0.8
    report = (out / "report.md").read_text()
    sections = ("## Annotation", "## Question answering", "## Conditioned generation")
    for section in (*sections, "## Perturbation response"):
        assert section in report
    assert "no perturbation column" in report
    for figure in ("annotation.png", "question_answering.png", "generation.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    check_intervals_and_notes(metrics, report)
    check_predictions(out / "predictions.h5ad", metrics)


def check_intervals_and_notes(metrics: dict, report: str) -> None:
    """Every accuracy carries scipy's Wilson interval of its counts; pbmc68k's one tissue
    makes tissue inference trivial, and the report says so."""
    tasks = {**metrics["annotation"], **metrics["question_answering"]}
    for result in tasks.values():
        n = result.get("n_cells", result.get("n_questions"))
        for scores in result["methods"].values():
            assert scores["accuracy"] == pytest.approx(scores["n_correct"] / n)
            wilson = binomtest(scores["n_correct"], n).proportion_ci(0.95, method="wilson")
            assert scores["ci95"] == pytest.approx([wilson.low, wilson.high], abs=1e-12)
            low, high = scores["ci95"]
            assert f"{scores['accuracy']:.3f} [{low:.2f}, {high:.2f}]" in report
    tissue = metrics["annotation"]["tissue_inference"]
    assert tissue["n_labels"] == 1 and tissue["notes"][0].startswith("trivial: one label")
    assert metrics["annotation"]["cell_type_annotation"]["notes"] == []
    assert "> **Note:** trivial: one label ('peripheral blood' for every cell)" in report
    qa = metrics["question_answering"]
    assert set(qa) == {"most_expressed", "is_expressed", "cell_type_choice"}
    assert {k: (r["n_questions"], r["chance"]) for k, r in qa.items()} == {
        "most_expressed": (24, 0.25),
        "is_expressed": (24, 0.5),
        "cell_type_choice": (24, 0.25),
    }


def check_predictions(path, metrics: dict) -> None:
    """predictions.h5ad: the evaluated cells by name, their expression as the baselines
    read it, and columns whose right/wrong counts are metrics.json's accuracies."""
    adata = anndata.read_h5ad(path)
    held = load_held_out(load_bundle(pbmc_workdir()))
    test_cells = held.split_cells("test")
    names = held.cells.sentences.cell_names(np.arange(len(held.cells.sentences)))
    assert adata.n_obs == 24 and set(adata.obs_names) <= set(names[test_cells])
    rows = np.array([list(names).index(n) for n in adata.obs_names])
    assert list(adata.obs["split"].unique()) == ["test"]
    np.testing.assert_allclose(
        adata.X.toarray(), log_normalized(held.expression[rows], "x").toarray(), rtol=1e-6
    )
    assert adata.uns["log1p"] == {"base": 10}
    assert list(adata.var_names) == [str(s) for s in held.symbols]
    vocabulary = load_bundle(pbmc_workdir()).dataset()["vocabulary"]
    expected = [vocabulary.get(s, 0) > 0 for s in adata.var_names]
    np.testing.assert_array_equal(adata.var["in_model_vocabulary"].to_numpy(), expected)
    assert adata.obsm["X_pca"].shape == (24, 23)
    np.testing.assert_array_equal(
        adata.obs["cell_type"].astype(str), held.labels("cell_type", rows).astype(str)
    )
    suffixes = {v: k for k, v in adata.uns["c2s_eval"]["methods"].items()}
    for task, field in (("cell_type_annotation", "cell_type"), ("tissue_inference", "tissue")):
        for method, scores in metrics["annotation"][task]["methods"].items():
            predicted = adata.obs[f"{field}_pred_{suffixes[method]}"].astype(str)
            correct = np.asarray(normalize_labels(predicted)) == np.asarray(
                normalize_labels(adata.obs[field].astype(str))
            )
            np.testing.assert_array_equal(adata.obs[f"{field}_correct_{suffixes[method]}"], correct)
            assert correct.sum() == scores["n_correct"]
    likelihood = adata.obs["cell_type_score_likelihood"].to_numpy()
    assert np.all(np.isfinite(likelihood)) and np.all(likelihood < 0)  # log-likelihoods
    logreg = adata.obs["cell_type_score_logreg"].to_numpy()
    assert np.all((logreg > 1 / 7) & (logreg <= 1))  # a probability, above uniform over 7
    for kind, result in metrics["question_answering"].items():
        answers = adata.obs[f"qa_{kind}_answer"].astype(str)
        for method in ("generation", "likelihood"):
            predicted = adata.obs[f"qa_{kind}_pred_{method}"].astype(str)
            correct = np.asarray(normalize_labels(predicted)) == np.asarray(
                normalize_labels(answers)
            )
            assert correct.sum() == result["methods"][f"model ({method})"]["n_correct"]
        options = adata.obs[f"qa_{kind}_options"].astype(str).str.split(", ")
        assert all(a in o for a, o in zip(answers, options, strict=True))
        likelihood = adata.obs[f"qa_{kind}_pred_likelihood"].astype(str)
        assert all(p in o for p, o in zip(likelihood, options, strict=True))


@pytest.fixture(scope="module")
def perturb_bundle():
    folder = scratch_dir()
    data = folder / "perturb.h5ad"
    perturb_seq_adata().write_h5ad(data)
    only = {f"tasks.{t}": 0.0 for t in small_config().tasks}
    config = small_config(**{**only, "tasks.perturbation_response": 1.0})
    config.datasets = [perturb_dataset(str(data))]
    config.examples = dict(train=200, validation=40, test=40)
    config.tokenizer.vocab_size = 400
    corpus = folder / "corpus"
    build_corpus(corpus_spec(config), corpus, progress=False)
    workdir = folder / "train"
    cfg = pbmc_train_config(
        f"data.corpus_dir='{corpus}'", "train.steps=4", "train.eval_every=0", "data.seq_len=128"
    )
    train(cfg, workdir)
    return load_bundle(workdir)


@pytest.mark.slow
@pytest.mark.integration
def test_perturbation_part_scores_model_and_baselines_per_pair(perturb_bundle):
    held = load_held_out(perturb_bundle)
    cfg = load_config(EVAL_CONFIG).perturbation
    cfg.num_genes, cfg.max_cells_per_pair = 10, 2
    result = evaluate_perturbation(perturb_bundle, held, cfg, progress=False)
    rows = result["table"]
    pairs = {(r["cell_type"], r["perturbation"]) for r in rows}
    assert {p for _, p in pairs} <= {"KO_A", "KO_B", "DRUG_X"}
    for pair in pairs:
        methods = {r["method"]: r for r in rows if (r["cell_type"], r["perturbation"]) == pair}
        assert set(methods) == {"model", "control_mean", "train_mean"}
        # Predicting no change carries no information about which genes move.
        assert methods["control_mean"]["pearson_delta"] == 0.0
    knockouts = [
        r for r in rows if r["perturbation"] in SHIFTED_GENE and r["method"] == "train_mean"
    ]
    # The knocked-out gene dominates the training change, so the train-mean baseline moves
    # in the right direction on knockouts.
    assert np.mean([r["direction_agreement_top_de"] for r in knockouts]) > 0.0
    assert "seen" in result["summary"]
