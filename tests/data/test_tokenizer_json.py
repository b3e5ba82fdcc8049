"""tokenizer.json files (the `tokenizers` library's format: Pythia's GPT-NeoX byte-level
BPE) work wherever a SentencePiece model does: corpus build, training, the exported
bundle, constrained generation, scoring and GRPO's completion texts.

The real Pythia tokenizer cannot be downloaded here; the tokenizer is trained with
`tokenizers` using GPT-NeoX's settings (byte-level pre-tokenizer without a prefix space,
byte-level decoder, `<|endoftext|>` as the only special token that ends examples)."""

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from c2s_jax.data.corpus_config import corpus_spec
from c2s_jax.data.records import build_corpus, data_source
from c2s_jax.data.tokenizer import Tokenizer
from c2s_jax.errors import InputError
from c2s_jax.rl.grpo import completion_texts
from tests.data.corpus_helpers import scratch_dir, small_config


def neox_style_tokenizer(texts: list[str], path: Path, vocab_size: int = 600) -> Path:
    """A byte-level BPE with GPT-NeoX's pre-tokenizer, decoder and special tokens."""
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(path))
    return path


@functools.cache
def neox_corpus() -> Path:
    """The small pbmc68k corpus tokenized with a NeoX-style tokenizer.json."""
    folder = scratch_dir()
    from c2s_jax.data.embedded import pbmc68k_counts

    genes = list(pbmc68k_counts().var_names)
    texts = [" ".join(genes[i : i + 50]) for i in range(0, len(genes), 7)]
    texts += ["Identify the cell type of a human cell: CD3D CD3E. T cell."] * 20
    path = neox_style_tokenizer(texts, folder / "tokenizer.json")
    config = small_config(**{"tokenizer.path": str(path), "tokenizer.family": "pythia"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_corpus(corpus_spec(config), folder / "corpus", progress=False)
    assert not [w for w in caught if "gene-table tokenization differs" in str(w.message)]
    return folder / "corpus"


def test_special_tokens_pieces_and_round_trip(tmp_path):
    path = neox_style_tokenizer(["CD3D CD3E LYZ", "MS4A1 CD79A. B cell."] * 5, tmp_path / "t.json")
    tokenizer = Tokenizer(path, "pythia")
    assert tokenizer.format == "tokenizers" and tokenizer.file_name == "tokenizer.json"
    assert tokenizer.bos_id is None and tokenizer.piece(tokenizer.eos_id) == "<|endoftext|>"
    text = "CD3D LYZ MS4A1. B cell."
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([*ids, tokenizer.eos_id]) == text  # EOS writes nothing
    assert tokenizer.piece(int(tokenizer.encode(" CD3D")[0])).startswith("Ġ")
    with pytest.raises(InputError, match="needs a BOS token"):
        Tokenizer(path, "gemma")
    (tmp_path / "broken.json").write_text('{"model": ')
    with pytest.raises(InputError, match=r"broken\.json: not a tokenizer\.json"):
        Tokenizer(tmp_path / "broken.json", "pythia")


def test_a_corpus_tokenized_with_a_tokenizer_json_holds_neox_examples():
    corpus = neox_corpus()
    tokenizer = Tokenizer(corpus.parent / "tokenizer.json", "pythia")
    source = data_source(corpus, "train")
    for i in range(5):
        tokens = np.asarray(source[i]["tokens"])
        assert tokens[-1] == tokenizer.eos_id and tokenizer.eos_id not in tokens[:-1]
        assert tokens[0] != tokenizer.eos_id  # no BOS in the NeoX family


def test_grpo_completion_texts_drop_ids_past_a_bpe_vocabulary(tmp_path):
    path = neox_style_tokenizer(["CD3D CD3E"] * 5, tmp_path / "t.json")
    tokenizer = Tokenizer(path, "pythia")
    ids = tokenizer.encode("CD3D")
    row = np.array([[*ids, tokenizer.vocab_size + 5, tokenizer.eos_id]])
    assert completion_texts(tokenizer, row, np.array([row.shape[1]])) == ["CD3D"]


@functools.cache
def neox_pythia_run() -> Path:
    """A tiny Pythia trained 4 steps on the NeoX-tokenized corpus (its workdir)."""
    from c2s_jax.config_loading import load_config
    from c2s_jax.train.loop import train
    from tests.trained_model import PBMC_TRAIN

    cfg = load_config(
        PBMC_TRAIN,
        [
            "model.name='pythia_tiny'",
            "model.overrides={'vocab_size': 640, 'dtype': 'float32'}",
            f"data.corpus_dir='{neox_corpus()}'",
            "data.batch_size=4",
            "data.seq_len=256",
            "data.eval_batches=1",
            "train.steps=4",
            "train.eval_every=4",
            "train.checkpoint_every=4",
        ],
    )
    workdir = scratch_dir() / "neox_pythia"
    assert np.isfinite(train(cfg, workdir).train_loss)
    return workdir


def test_a_pythia_trained_on_it_exports_generates_and_scores_with_its_tokenizer_json():
    from c2s_jax.generation import generate_cells
    from c2s_jax.model_bundle import load_bundle, newest_export
    from c2s_jax.sample import SamplingParams
    from c2s_jax.scoring import Scorer, score_texts

    run = neox_pythia_run()
    assert (newest_export(run) / "tokenizer.json").exists()
    bundle = load_bundle(run)
    assert bundle.tokenizer.format == "tokenizers" and bundle.trained_length == 256

    params = SamplingParams(max_new_tokens=30, temperature=1.0, seed=0)
    cells = generate_cells(bundle, ["CD14+ Monocyte"], 2, params, num_genes=5, progress=False)
    genes = set(bundle.dataset()["genes"])
    for sentence in cells.sentences:  # constrained: known genes (several pieces each), once
        words = sentence.split()
        assert set(words) <= genes and len(set(words)) == len(words)
    scored = score_texts(Scorer.from_bundle(bundle), bundle.tokenizer, ["Cell type:"], ["T cell."])
    assert np.isfinite(scored[0].total) and len(scored[0].tokens) >= 2


def test_transformers_serves_the_export_with_its_tokenizer(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from c2s_jax.cli import main
    from c2s_jax.generation import generate_cells
    from c2s_jax.model_bundle import load_bundle
    from c2s_jax.sample import SamplingParams

    run, out = neox_pythia_run(), tmp_path / "hf"
    assert main(["convert", "flax2hf", str(run), str(out)]) == 0
    bundle = load_bundle(run)
    eos = bundle.tokenizer.eos_id
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == eos and config.get("bos_token_id") is None
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == eos
    card = (out / "README.md").read_text()
    assert "cells" in card and "Model `pythia_tiny`" in card and "4 steps of 4 x 256" in card

    hf_tokenizer = AutoTokenizer.from_pretrained(out)
    hf_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    source = data_source(neox_corpus(), "test")
    for index in range(3):  # held-out prompts: the ids the corpus holds
        record = source[index]
        prompt_ids = np.asarray(record["tokens"])[np.asarray(record["loss_mask"]) == 0]
        prompt = bundle.tokenizer.decode(prompt_ids)
        assert hf_tokenizer(prompt)["input_ids"] == prompt_ids.tolist()

        # Greedy continuations agree token for token, EOS included when reached; both
        # sides see the prompt cut to the trained length.
        cut = prompt_ids[: bundle.trained_length]
        ours = generate_cells(
            bundle,
            [prompt],
            1,
            SamplingParams(max_new_tokens=12, temperature=0.0),
            constrain=False,
            raw=True,
            progress=False,
            truncate=True,
        ).completions[0]
        theirs = hf_model.generate(
            torch.tensor([cut.tolist()]), max_new_tokens=12, do_sample=False
        )[0, len(cut) :].tolist()
        assert list(ours.tokens) == theirs[: len(ours.tokens)]
        if theirs[-1] == eos or len(theirs) < 12:
            assert ours.finish == "eos" and theirs[-1] == eos
