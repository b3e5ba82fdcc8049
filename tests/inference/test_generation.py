"""Generated cells hold exactly the genes asked for, and their AnnData says what came back."""

import dataclasses
import logging

import numpy as np
import pytest

from c2s_jax.checkpoints.bundle import Bundle, load_bundle
from c2s_jax.inference.generation import GeneratedCells, cells_to_anndata, generate_cells
from c2s_jax.inference.sampler import Completion, SamplingParams
from c2s_jax.sentences.inverse import InverseFit
from tests.support.trained_model import pbmc_workdir


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(pbmc_workdir())


def with_genes(bundle: Bundle, genes: list[str]) -> Bundle:
    """The bundle with its corpus's gene list replaced."""
    (name, dataset), *_ = bundle.corpus["datasets"].items()
    corpus = {**bundle.corpus, "datasets": {name: {**dataset, "genes": genes}}}
    return dataclasses.replace(bundle, corpus=corpus)


@pytest.mark.parametrize("num_genes", [3, 12, 40])
def test_every_cell_holds_exactly_the_genes_asked_for(bundle, num_genes):
    genes = set(bundle.dataset()["genes"])
    # Hot sampling and a token limit far too small: the count must hold regardless.
    params = SamplingParams(max_new_tokens=4, temperature=1.5, seed=num_genes)
    requests = ["CD14+ Monocyte", "CD19+ B"]
    cells = generate_cells(bundle, requests, 3, params, num_genes=num_genes, progress=False)
    for sentence, completion in zip(cells.sentences, cells.completions, strict=True):
        words = sentence.split()
        assert len(words) == num_genes and len(set(words)) == num_genes, sentence
        assert set(words) <= genes
        assert completion.finish == "eos"
    assert cells.short_reasons == [""] * 6 and cells.num_genes == num_genes
    assert (
        cells.conditions == [{"cell_type": "CD14+ Monocyte"}] * 3 + [{"cell_type": "CD19+ B"}] * 3
    )
    assert all("List the top" in p and "CD19+ B" in p for p in cells.prompts[3:])


def test_a_short_gene_list_comes_back_short_and_says_why(bundle, caplog):
    few = list(bundle.dataset()["genes"][:6])
    small = with_genes(bundle, few)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=0)
    with caplog.at_level(logging.WARNING):
        cells = generate_cells(small, ["CD14+ Monocyte"], 2, params, num_genes=10, progress=False)
    assert [sorted(s.split()) for s in cells.sentences] == [sorted(few)] * 2
    assert cells.short_reasons == ["the model's gene list holds only 6 genes"] * 2
    assert "2 of 2 cells came back with fewer than the 10 genes asked for" in caplog.text
    adata = cells_to_anndata(cells, small)
    assert adata.obs["short"].tolist() == [True, True]
    assert adata.obs["n_genes"].tolist() == [6, 6]
    assert adata.obs["n_genes_requested"].tolist() == [10, 10]
    assert adata.var["n_cells"].tolist() == [2] * 6


def test_the_anndata_holds_ranks_expression_and_what_was_asked(bundle):
    fit = bundle.dataset()["inverse_fit"]
    genes = list(bundle.dataset()["genes"])
    # Written without the constraint: a word off the gene list ("NOTAGENE") is kept apart.
    sentences = [f"{genes[5]} {genes[2]} notagene {genes[7]}", f"{genes[2]} {genes[9]}"]
    completions = [Completion(np.zeros(1, np.int32), np.zeros(1), s, "eos") for s in sentences]
    cells = GeneratedCells(
        requests=["kidney B cells", "2 B"],
        sentences=sentences,
        completions=completions,
        prompts=["prompt 0", "prompt 1"],
        conditions=[{"cell_type": "B", "tissue": "kidney"}, {"cell_type": "B"}],
        num_genes=4,
        short_reasons=["", "the model closed the sentence early (no gene constraint)"],
    )
    adata = cells_to_anndata(cells, bundle)
    assert list(adata.var_names) == [*genes, "NOTAGENE"]
    assert (
        adata.var["in_vocabulary"].sum() == len(genes) and not adata.var["in_vocabulary"].iloc[-1]
    )
    n_cells = adata.var["n_cells"]
    assert n_cells[genes[2]] == 2 and n_cells[genes[9]] == 1 and n_cells["NOTAGENE"] == 1
    assert n_cells.sum() == 6
    rank = adata.layers["rank"].toarray()
    assert rank[0, [5, 2, len(genes), 7]].tolist() == [1, 2, 3, 4]
    assert rank[1, [2, 9]].tolist() == [1, 2] and np.count_nonzero(rank) == 6
    expected = InverseFit(**fit).expression(np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(adata.X.toarray()[0, [5, 2, len(genes), 7]], expected, rtol=1e-6)
    assert adata.uns["log1p"] == {"base": 10}
    obs = adata.obs
    assert obs["cell_type"].tolist() == ["B", "B"]
    assert obs["tissue"].iloc[0] == "kidney" and obs["tissue"].isna().iloc[1]
    assert obs["prompt"].tolist() == ["prompt 0", "prompt 1"]
    assert obs["n_genes"].tolist() == [4, 2] and obs["unknown_words"].tolist() == [1, 0]
    assert obs["short"].tolist() == [False, True]
    assert obs["short_reason"].iloc[1].startswith("the model closed")
