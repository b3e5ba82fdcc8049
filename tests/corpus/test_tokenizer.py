"""Tokenizer: gene pieces, gene-table equivalence and fallback, special tokens, loss mask."""

import functools
import io

import numpy as np
import pytest
import sentencepiece

from c2s_jax.corpus.prompts.formatter import GeneRun, Rendered
from c2s_jax.corpus.tokenizer import (
    ExampleEncoder,
    GeneTable,
    Tokenizer,
    token_efficiency,
    train_tokenizer,
)
from c2s_jax.errors import InputError
from tests.support.corpus_helpers import scratch_dir

SYMBOLS = np.array([f"GENE{i}" for i in range(60)] + ["CD74", "HLA-DRA", "CD4", "CD40", "RPL13A"])


def _texts(n: int = 300) -> list[str]:
    rng = np.random.default_rng(0)
    return [
        f"The cell of type T{i % 5} expresses: " + " ".join(rng.choice(SYMBOLS, 30)) + "."
        for i in range(n)
    ]


@functools.cache
def _models() -> dict:
    folder = scratch_dir()
    return {
        "gene": train_tokenizer(_texts(), folder / "gene.model", 300, SYMBOLS),
        "generic": train_tokenizer(_texts(), folder / "generic.model", 300 + len(SYMBOLS)),
    }


def _example(seed: int) -> Rendered:
    rng = np.random.default_rng(seed)
    run = GeneRun(rng.integers(0, len(SYMBOLS), 12), SYMBOLS)
    answer = GeneRun(rng.integers(0, len(SYMBOLS), 5), SYMBOLS)
    return Rendered(
        prompt=("Cell 1: ", run, ".\nCell 2: ", run, ".\nWhich genes follow?"),
        answer=(answer, "."),
    )


def test_every_gene_is_one_piece_of_the_gene_aware_tokenizer():
    tokenizer = Tokenizer(_models()["gene"], "c2s")
    assert all(len(tokenizer.encode(f" {s}")) == 1 for s in SYMBOLS)
    assert len(tokenizer.encode("CD40 CD4")) == 2


def test_gene_table_equals_text_tokenization():
    for name in ("gene", "generic"):
        encoder = ExampleEncoder(Tokenizer(_models()[name], "c2s"))
        for seed in range(20):
            assert encoder.matches_text(_example(seed)), (name, seed)
        table = GeneTable.build(encoder.tokenizer, SYMBOLS)
        genes = np.array([3, 60, 61, 3])
        expected = encoder.tokenizer.encode(" " + " ".join(SYMBOLS[genes]))
        np.testing.assert_array_equal(table.lookup(genes), expected)


def test_table_and_text_paths_give_the_same_tokens_and_mask():
    tokenizer = Tokenizer(_models()["generic"], "gemma")
    by_table = ExampleEncoder(tokenizer, pre_tokenized=True).encode(_example(1))
    by_text = ExampleEncoder(tokenizer, pre_tokenized=False).encode(_example(1))
    np.testing.assert_array_equal(by_table.tokens, by_text.tokens)
    np.testing.assert_array_equal(by_table.loss_mask, by_text.loss_mask)


def _mismatching_model() -> str:
    # Identity normalization keeps every space, so ' GENE1' alone gains an extra space mark.
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_texts()),
        model_writer=model,
        vocab_size=200,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path = scratch_dir() / "odd.model"
    path.write_bytes(model.getvalue())
    return str(path)


def test_mismatch_falls_back_to_text_with_a_warning():
    encoder = ExampleEncoder(Tokenizer(_mismatching_model(), "c2s"))
    with pytest.warns(UserWarning, match="tokenizing text instead"):
        mismatches = encoder.verify_tables([_example(s) for s in range(5)])
    assert mismatches > 0 and not encoder.pre_tokenized
    encoded = encoder.encode(_example(0))
    text = _example(0)
    expected = encoder.tokenizer.encode(text.prompt_text())
    np.testing.assert_array_equal(encoded.tokens[1 : 1 + len(expected)], expected)


@pytest.mark.parametrize("family", ["gemma", "pythia"])
def test_special_tokens_and_loss_mask_follow_the_family(family):
    tokenizer = Tokenizer(_models()["gene"], family)
    encoded = ExampleEncoder(tokenizer).encode(_example(2))
    tokens, mask = encoded.tokens, encoded.loss_mask
    assert tokens[-1] == tokenizer.eos_id and mask[-1] == 1
    bos = Tokenizer(_models()["gene"], "gemma").bos_id  # the file's BOS, used or not
    if family == "gemma":
        assert tokens[0] == bos and mask[0] == 0
    assert (tokens[1:] != bos).all() and (tokens[:-1] != tokenizer.eos_id).all()
    answer_ids = tokens[mask == 1][:-1]
    assert tokenizer.decode(answer_ids) == _example(2).answer_text()
    assert mask[: np.argmax(mask)].sum() == 0 and mask[np.argmax(mask) :].all()


def test_any_sentencepiece_model_loads_by_path_and_bad_paths_are_input_errors():
    tokenizer = Tokenizer(_models()["generic"], "pythia")
    assert tokenizer.bos_id is None and tokenizer.describe()["sha256"] == tokenizer.sha256
    with pytest.raises(InputError, match="cannot read"):
        Tokenizer(scratch_dir() / "missing.model", "gemma")
    junk = scratch_dir() / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="neither a SentencePiece model nor a tokenizer.json"):
        Tokenizer(junk, "gemma")
    with pytest.raises(InputError, match="family"):
        Tokenizer(_models()["generic"], "llama")


def test_training_is_deterministic_and_beats_a_generic_tokenizer_on_genes():
    again = train_tokenizer(_texts(), scratch_dir() / "again.model", 300, SYMBOLS)
    assert again.read_bytes() == _models()["gene"].read_bytes()
    gene = token_efficiency(Tokenizer(_models()["gene"], "c2s"), _texts(50), SYMBOLS)
    generic = token_efficiency(Tokenizer(_models()["generic"], "c2s"), _texts(50), SYMBOLS)
    assert gene["tokens_per_gene"] == 1.0 < generic["tokens_per_gene"]
    assert gene["tokens_per_example"] < generic["tokens_per_example"]
