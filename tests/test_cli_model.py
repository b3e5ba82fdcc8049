"""`c2s generate`, `c2s score` and `c2s embed` on the shared trained pbmc68k model."""

import json

import anndata
import numpy as np
import pytest

from c2s_jax.cli import main
from c2s_jax.model_bundle import load_bundle
from tests.trained_model import pbmc_workdir


def test_generate_writes_valid_unrepeated_cells_with_requests(tmp_path, capsys):
    out = tmp_path / "cells.h5ad"
    args = ["generate", "--checkpoint", str(pbmc_workdir()), "CD14+ Monocyte", "CD19+ B"]
    status = main([*args, "-n", "3", "--num-genes", "10", "--seed", "2", "--out-h5ad", str(out)])
    assert status == 0
    adata = anndata.read_h5ad(out)
    genes = set(load_bundle(pbmc_workdir()).dataset()["genes"])
    assert list(adata.obs["request"]) == ["CD14+ Monocyte"] * 3 + ["CD19+ B"] * 3
    assert adata.uns["log1p"]["base"] == 10
    for sentence in adata.obs["cell_sentence"]:
        words = sentence.split()
        assert words and set(words) <= genes and len(set(words)) == len(words)
    assert (adata.obs["unknown_words"] == 0).all()
    # Reconstructed expression: one nonzero per written gene, decreasing with rank.
    first = adata.X[0].toarray().ravel()
    order = [list(adata.var_names).index(g) for g in adata.obs["cell_sentence"].iloc[0].split()]
    assert np.count_nonzero(first) == len(order)
    assert np.all(np.diff(first[order]) <= 0)
    assert "CD14+ Monocyte" in capsys.readouterr().out


def test_generate_reads_counts_and_labels_from_requests(capsys):
    args = ["generate", "--checkpoint", str(pbmc_workdir()), "--num-genes", "5", "--json"]
    assert main([*args, "2 human CD14+ monocytes", "-n", "3"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["request"] for x in lines] == ["2 human CD14+ monocytes"] * 2  # its count wins
    assert main([*args, "CD14+ Monocyts"]) == 2
    err = capsys.readouterr().err
    assert "could not match 'CD14+ Monocyts' (did you mean cell type 'CD14+ Monocyte'" in err


def test_score_ranks_choices_and_reports_tokens(capsys):
    prompt = "Identify the cell type from this ranked list of 3 genes of a human cell: CD3D."
    choices = ["CD14+ Monocyte.", "CD19+ B."]
    args = ["score", "CD14+ Monocyte.", "--checkpoint", str(pbmc_workdir()), "--prompt", prompt]
    assert main([*args, "--tokens", "--choices", *choices]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    text, ranking = lines
    assert text["tokens"] == len(text["per_token"]) and text["logprob"] < 0
    ranked = dict(ranking["ranking"])
    assert ranked["CD14+ Monocyte."] == pytest.approx(text["logprob"], rel=1e-5)
    assert ranking["best"] == max(ranked, key=ranked.get)


def test_embed_adds_obsm_and_a_picture(pbmc_counts, tmp_path):
    source, out, png = tmp_path / "in.h5ad", tmp_path / "out.h5ad", tmp_path / "map.png"
    pbmc_counts[:40].copy().write_h5ad(source)
    args = ["embed", str(source), str(out), "--checkpoint", str(pbmc_workdir()), "--top-k", "20"]
    assert main([*args, "--color", "cell_type", "--plot", str(png), "--method", "pca"]) == 0
    adata = anndata.read_h5ad(out)
    assert adata.obsm["X_c2s"].shape == (40, 128)
    assert np.isfinite(adata.obsm["X_c2s"]).all()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The drawn projection is kept; PCA's first axis carries the most variance.
    projection = adata.obsm["X_c2s_pca"]
    assert projection.shape == (40, 2) and projection[:, 0].var() >= projection[:, 1].var()
    assert main([*args, "--plot", str(png), "--method", "umap"]) == 0
    assert anndata.read_h5ad(out).obsm["X_umap"].shape == (40, 2)


def test_bad_requests_are_named(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path)]) == 2
    assert "REQUEST" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(tmp_path), "x"]) == 2
    assert "training workdir" in capsys.readouterr().err


def test_long_prompts_are_refused_or_cut_to_the_trained_length(capsys, caplog):
    long_prompt = "Identify the cell type of a human cell: " + "CD3D " * 400
    score = ["score", "--checkpoint", str(pbmc_workdir()), "--prompt", long_prompt, "CD19+ B."]
    assert main(score) == 2
    assert "over the 256-token sequences" in capsys.readouterr().err
    assert main([*score, "--truncate"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert np.isfinite(record["logprob"])
    assert "prompt cut from" in caplog.text and "(--truncate)" in caplog.text

    generate = ["generate", "--checkpoint", str(pbmc_workdir()), "--raw", long_prompt]
    assert main([*generate, "--max-new-tokens", "4"]) == 2
    assert "--truncate" in capsys.readouterr().err
    assert main([*generate, "--max-new-tokens", "4", "--truncate"]) == 0
