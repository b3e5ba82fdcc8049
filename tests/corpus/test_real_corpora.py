"""Corpora of real data: Kang 2018 (configs/corpus/kang2018_perturbation.py), control vs
IFN-beta cells with whole (cell type, stimulated) combinations held out for test; and
the skin carcinoma section (configs/corpus/st_skin_spatial.py), spatial neighbors on the
array grid."""

import functools

import numpy as np
import pandas as pd
import pytest

from c2s_jax.config_loading import load_config
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.records import build_corpus, data_source
from c2s_jax.corpus.splits import assign_splits
from c2s_jax.errors import InputError
from c2s_jax.sentences.embedded import load_embedded
from tests.support.corpus_helpers import scratch_dir
from tests.support.trained_model import ROOT

CONFIG = ROOT / "configs" / "corpus" / "kang2018_perturbation.py"
ST_CONFIG = ROOT / "configs" / "corpus" / "st_skin_spatial.py"
HELD_OUT = {"CD14 Mono", "B", "NK"}


@functools.cache
def kang_corpus():
    config = load_config(CONFIG)
    config.examples = dict(train=300, validation=40, test=150)
    config.tokenizer.training_examples = 200
    config.tokenizer.vocab_size = 600
    config.tokenizer.check_examples = 16
    out = scratch_dir() / "kang"
    build_corpus(corpus_spec(config), out, progress=False)
    return out, load_embedded("embedded:kang2018").obs


def test_held_out_combinations_are_the_whole_test_split_and_nothing_else():
    corpus, obs = kang_corpus()
    cells = pd.read_parquet(corpus / "cells.parquet")
    held = obs["seurat_annotations"].isin(HELD_OUT).to_numpy() & (obs["stim"] == "STIM").to_numpy()
    np.testing.assert_array_equal(cells["split"].to_numpy() == "test", held)
    assert (cells["split"] == "validation").any()


def test_test_examples_ask_for_the_response_of_types_never_seen_stimulated():
    corpus, obs = kang_corpus()
    types = obs["seurat_annotations"].astype(str).to_numpy()
    arms = obs["perturbation"].to_numpy()
    perturbation = 0
    for record in data_source(corpus, "test"):
        cell_ids = np.asarray(record["cell_ids"])
        if record["task"] != b"perturbation_response":
            assert all(types[c] in HELD_OUT and arms[c] == "IFN-beta" for c in cell_ids)
            continue
        control, stimulated = cell_ids
        perturbation += 1
        assert types[stimulated] in HELD_OUT and arms[stimulated] == "IFN-beta"
        assert types[control] == types[stimulated] and arms[control] == "control"
    assert perturbation > 20
    held = np.isin(types, list(HELD_OUT)) & (arms == "IFN-beta")
    for record in data_source(corpus, "train"):
        assert not held[np.asarray(record["cell_ids"])].any()


def test_a_held_out_combination_that_matches_nothing_is_named():
    obs = pd.DataFrame({"cell_type": ["T", "B"] * 5, "stim": ["CTRL"] * 10})
    fractions = dict(train=0.8, validation=0.2, test=0.0)
    with pytest.raises(InputError, match=r"held_out\[0\] .*matches no cell.*'stim': \['CTRL'\]"):
        assign_splits(obs, (), fractions, 0, "d", [{"cell_type": "B", "stim": "STIM"}])
    with pytest.raises(InputError, match=r"held_out\[0\] names obs columns \['donor'\]"):
        assign_splits(obs, (), fractions, 0, "d", [{"donor": "1"}])


def test_spatial_examples_of_the_skin_section_are_grid_neighbors(tmp_path):
    config = load_config(ST_CONFIG)
    config.examples = dict(train=120, validation=0, test=0)
    config.tokenizer.training_examples = 100
    config.tokenizer.vocab_size = 400
    config.tokenizer.check_examples = 8
    build_corpus(corpus_spec(config), tmp_path / "st", progress=False)
    grid = load_embedded("embedded:st_skin").obsm["spatial"]
    spatial = 0
    for record in data_source(tmp_path / "st", "train"):
        if record["task"] != b"spatial_neighborhood":
            continue
        spatial += 1
        anchor, *rest = np.asarray(record["cell_ids"])
        # The 6 nearest spots of a grid spot lie within 2 grid steps of it.
        assert (np.abs(grid[rest] - grid[anchor]).max(axis=1) <= 2).all()
    assert spatial > 40
