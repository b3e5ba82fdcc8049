"""`c2s annotate`: a user's .h5ad annotated by a model given as an HF checkpoint folder with
its tokenizer, in cell2sentence's prompt or ours, by generation or label ranking; the
answers equal `c2s generate` on the same prompts."""

import json
from importlib import resources

import anndata
import numpy as np

from c2s_jax.cli import main
from c2s_jax.inference.annotate import CELL2SENTENCE_PROMPT, answer_label
from tests.support.trained_model import neox_pythia_run


def test_the_cell2sentence_prompt_is_the_packages_first_wording():
    prompts = resources.files("cell2sentence") / "prompts"
    table = json.loads((prompts / "single_cell_cell_type_prediction_prompts.json").read_text())
    assert table["model_input"][0] == CELL2SENTENCE_PROMPT


def test_annotate_writes_predictions_equal_to_generate(tmp_path, pbmc_counts, capsys):
    hf = tmp_path / "hf"
    assert main(["convert", "flax2hf", str(neox_pythia_run()), str(hf)]) == 0
    cells = tmp_path / "cells.h5ad"
    pbmc_counts[:12].copy().write_h5ad(cells)
    out = tmp_path / "annotated.h5ad"
    args = ["annotate", str(cells), "--checkpoint", str(hf), "--top-k", "10"]
    common = ["--prompt-style", "cell2sentence", "--max-new-tokens", "6", "--batch-size", "5"]
    assert main([*args, *common, "--out", str(out)]) == 0
    annotated = anndata.read_h5ad(out)
    assert annotated.n_obs == 12 and annotated.obs["c2s_cell_type"].notna().all()
    assert np.isfinite(annotated.obs["c2s_cell_type_score"]).all()
    np.testing.assert_array_equal(annotated.X.toarray(), pbmc_counts[:12].X.toarray())

    # The same prompt through `c2s generate --raw` gives the same answer.
    from c2s_jax.sentences.cell_sentences import cell_sentences

    first = cell_sentences(cells, top_k=10).genes(0)
    prompt = CELL2SENTENCE_PROMPT.format(
        num_genes=len(first), organism="Homo sapiens", cell_sentence=" ".join(first)
    )
    capsys.readouterr()
    generate = ["generate", "--checkpoint", str(hf), "--raw", prompt, "--json"]
    assert main([*generate, "--max-new-tokens", "6", "--temperature", "0"]) == 0
    text = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"]
    assert annotated.obs["c2s_cell_type"].iloc[0] == answer_label(text)

    ranked = tmp_path / "ranked.h5ad"
    labels = ["CD14+ Monocyte", "CD19+ B", "CD56+ NK"]
    assert main([*args, "--labels", *labels, "--out", str(ranked), "--obs-key", "guess"]) == 0
    guesses = anndata.read_h5ad(ranked).obs
    assert set(guesses["guess"]) <= set(labels) and (guesses["guess_score"] < 0).all()


def test_cells_whose_genes_the_model_never_saw_are_named(tmp_path, pbmc_counts, capsys):
    from tests.support.trained_model import pbmc_workdir

    model = str(pbmc_workdir())
    foreign = pbmc_counts[:5].copy()
    foreign.var_names = [f"Gm{i}" for i in range(foreign.n_vars)]  # no gene the model knows
    cells = tmp_path / "foreign.h5ad"
    foreign.write_h5ad(cells)
    out = tmp_path / "out.h5ad"
    capsys.readouterr()
    assert main(["annotate", str(cells), "--checkpoint", model, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "foreign.h5ad: none of its 765 gene symbols (GM0, GM1, GM2, ...)" in err
    assert "--gene-symbols COLUMN" in err and len(err.splitlines()) == 1
    assert not out.exists()
