"""`c2s eval` end to end on the shared pbmc68k model, and the perturbation part on a small
Perturb-seq-like corpus."""

import json

import numpy as np
import pytest

from c2s_jax.cli import main
from c2s_jax.config_loading import load_config
from c2s_jax.data.corpus_config import corpus_spec
from c2s_jax.data.records import build_corpus
from c2s_jax.evaluate.held_out import load_held_out
from c2s_jax.evaluate.perturbation_eval import evaluate_perturbation
from c2s_jax.model_bundle import load_bundle
from c2s_jax.train.loop import train
from tests.data.corpus_helpers import (
    SHIFTED_GENE,
    perturb_dataset,
    perturb_seq_adata,
    scratch_dir,
    small_config,
)
from tests.trained_model import ROOT, pbmc_train_config, pbmc_workdir

EVAL_CONFIG = ROOT / "configs" / "eval" / "pbmc68k.py"


def test_eval_writes_every_metric_beside_its_baseline_and_floor(tmp_path, capsys):
    out = tmp_path / "report"
    small = [
        f"--config.checkpoint={pbmc_workdir()}",
        "--config.annotation.max_cells=24",
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
    for section in ("## Annotation", "## Conditioned generation", "## Perturbation response"):
        assert section in report
    assert "no perturbation column" in report
    for figure in ("annotation.png", "generation.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"


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
