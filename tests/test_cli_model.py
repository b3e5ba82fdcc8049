"""`c2s generate`, `c2s score` and `c2s embed` on the shared trained pbmc68k model."""

import json

import anndata
import numpy as np
import pytest

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.cli import main
from c2s_jax.inference.embeddings import CellEmbedder
from c2s_jax.sentences.cell_sentences import cell_sentences
from c2s_jax.sentences.expression_source import read_anndata
from tests.support.trained_model import pbmc_workdir


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
    # Exactly the genes asked for, and the request's labels, in obs.
    assert adata.obs["n_genes"].tolist() == [10] * 6 and not adata.obs["short"].any()
    assert (adata.obs["n_genes_requested"] == 10).all()
    assert list(adata.obs["cell_type"]) == list(adata.obs["request"])
    assert all("CD19+ B" in p for p in adata.obs["prompt"].iloc[3:])
    # var: the model's genes, how many cells wrote each; layers['rank']: 1-based ranks.
    assert adata.var["in_vocabulary"].all() and adata.var["n_cells"].sum() == 60
    ranks = adata.layers["rank"][0].toarray().ravel()
    # Reconstructed expression: one nonzero per written gene, decreasing with rank.
    first = adata.X[0].toarray().ravel()
    order = [list(adata.var_names).index(g) for g in adata.obs["cell_sentence"].iloc[0].split()]
    assert np.count_nonzero(first) == len(order)
    assert np.all(np.diff(first[order]) <= 0)
    assert ranks[order].tolist() == list(range(1, 11)) and np.count_nonzero(ranks) == 10
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
    # The stored embedding is the model's, of each cell's own sentence, in order.
    sentences = cell_sentences(read_anndata(source), top_k=20, seed=0)
    embedder = CellEmbedder(load_bundle(pbmc_workdir()), top_k=20)
    direct = embedder([sentences.genes(i) for i in (0, 1, 39)])
    np.testing.assert_allclose(adata.obsm["X_c2s"][[0, 1, 39]], direct, rtol=1e-4, atol=1e-5)
    assert not np.allclose(direct[0], direct[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The drawn projection is kept; PCA's first axis carries the most variance.
    projection = adata.obsm["X_c2s_pca"]
    assert projection.shape == (40, 2) and projection[:, 0].var() >= projection[:, 1].var()
    assert main([*args, "--plot", str(png), "--method", "umap"]) == 0
    mapped = anndata.read_h5ad(out)
    assert mapped.obsm["X_umap"].shape == (40, 2)
    np.testing.assert_array_equal(mapped.obsm["X_c2s"], adata.obsm["X_c2s"])


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
