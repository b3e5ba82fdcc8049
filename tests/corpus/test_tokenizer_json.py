"""tokenizer.json files (the `tokenizers` library's format: Pythia's GPT-NeoX byte-level
BPE) work wherever a SentencePiece model does: corpus build, training, the exported
bundle, constrained generation, scoring and GRPO's completion texts.

The real Pythia tokenizer cannot be downloaded here; the tokenizer is trained with
`tokenizers` using GPT-NeoX's settings (byte-level pre-tokenizer without a prefix space,
byte-level decoder, `<|endoftext|>` as the only special token that ends examples)."""

import numpy as np
import pytest

from c2s_jax.corpus.records import data_source
from c2s_jax.corpus.tokenizer import Tokenizer
from c2s_jax.errors import InputError
from c2s_jax.rl.grpo import completion_texts
from tests.support.corpus_helpers import neox_corpus, neox_style_tokenizer
from tests.support.trained_model import neox_pythia_run


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


def test_a_pythia_trained_on_it_exports_generates_and_scores_with_its_tokenizer_json():
    from c2s_jax.checkpoints.bundle import load_bundle, newest_export
    from c2s_jax.inference.generation import generate_cells
    from c2s_jax.inference.sampler import SamplingParams
    from c2s_jax.inference.scoring import Scorer, score_texts

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
