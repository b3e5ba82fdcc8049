"""The tokenizer.json written for a SentencePiece model gives SentencePiece's ids for every
text: BPE and unigram models, ours (NFKC, dummy prefix, gene symbols as user-defined
pieces, byte fallback) and Gemma's settings (no normalization, no prefix, spaces kept)."""

import io
import json
import random

import pytest
import sentencepiece
import tokenizers

from c2s_jax.checkpoints.sentencepiece_json import sentencepiece_to_tokenizer_json
from c2s_jax.corpus.tokenizer import train_tokenizer
from c2s_jax.errors import InputError
from c2s_jax.sentences.embedded import pbmc68k_counts

GENES = list(pbmc68k_counts().var_names)
RNG = random.Random(0)
TEXTS = [" ".join(RNG.sample(GENES, 40)) + ". CD14+ Monocyte." for _ in range(200)] + [
    "Identify the cell type of a human cell from its genes: " + " ".join(RNG.sample(GENES, 20))
    for _ in range(60)
]
# Spaces of every kind and count, compatibility characters NFKC folds, characters outside
# the vocabulary (bytes), genes glued to text and prefixes of gene pieces. The space mark
# '▁' itself is left out: see the conversion's docstring.
ODD = ["  ", "   ", "\t", "\n", "\u3000", "\u00a0", "é", "ﬁ", "Ⅳ", "中文", "😀", "ｆｕｌｌ"]
ODD += ["₂", "ß"]
PIECES = [*"abcXYZ019 .,-+_", *ODD, "CD74", " CD74", "CD745", "HLA-DRA"]


def _fuzz(count: int) -> list[str]:
    texts = ["", " ", "  a  b  ", "\ta", "a\n", *TEXTS[:40]]
    for _ in range(count):
        parts = [RNG.choice(PIECES + GENES) for _ in range(RNG.randint(1, 12))]
        texts.append("".join(RNG.choice(["", " ", "  "]) + part for part in parts))
    return texts


def _trained(model_type: str, **settings) -> bytes:
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS),
        model_writer=model,
        vocab_size=700,
        model_type=model_type,
        byte_fallback=True,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
        **settings,
    )
    return model.getvalue()


def _ours(model_type: str, tmp_path) -> bytes:
    path = train_tokenizer(TEXTS, tmp_path / "t.model", 300, GENES[:400], model_type=model_type)
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["ours_bpe", "ours_unigram", "gemma_settings"])
def test_every_text_gets_sentencepiece_ids_and_text(kind, tmp_path):
    if kind == "gemma_settings":
        model = _trained(
            "bpe",
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            user_defined_symbols=["▁CD74", "<start_of_turn>"],
        )
    else:
        model = _ours(kind.removeprefix("ours_"), tmp_path)
    reference = sentencepiece.SentencePieceProcessor()
    reference.LoadFromSerializedProto(model)
    converted = tokenizers.Tokenizer.from_str(
        json.dumps(sentencepiece_to_tokenizer_json(model, "t.model"))
    )
    assert converted.get_vocab_size(with_added_tokens=True) == reference.get_piece_size()
    for text in _fuzz(3000):
        ids = reference.encode(text)
        assert converted.encode(text, add_special_tokens=False).ids == ids, repr(text)
        assert converted.decode(ids) == reference.decode(ids), repr(text)


def test_the_literal_text_of_a_control_token_is_that_token(tmp_path):
    # transformers' SentencePiece tokenizers read '<s>' in text as BOS; so does the
    # conversion, where SentencePiece spells it out in bytes.
    model = _ours("bpe", tmp_path)
    converted = tokenizers.Tokenizer.from_str(
        json.dumps(sentencepiece_to_tokenizer_json(model, "t.model"))
    )
    assert converted.encode("CD74 <s>", add_special_tokens=False).tokens[-1] == "<s>"


def test_a_model_without_a_tokenizer_json_form_is_named():
    model = _trained("bpe", treat_whitespace_as_suffix=True)
    with pytest.raises(InputError, match="t.model: .* treat_whitespace_as_suffix"):
        sentencepiece_to_tokenizer_json(model, "t.model")
