"""An HF checkpoint's tokenizer travels: hf2flax keeps it in the bundle (so the model is
used without --tokenizer), flax2hf writes it back, and the round trip is lossless."""

import json

import jax
import numpy as np
from flax import nnx

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.cli import main
from tests.checkpoints import hf_reference as ref
from tests.support.corpus_helpers import neox_style_tokenizer

TEXTS = ["CD3D CD3E LYZ MS4A1", "Identify the cell type: CD14 LYZ. CD14+ Monocyte."] * 10


def _hf_dir_with_tokenizer(path, **config):
    ref.pythia(path, vocab_size=320, bos_token_id=0, eos_token_id=0, **config)
    neox_style_tokenizer(TEXTS, path / "tokenizer.json", vocab_size=300)
    return path


def _params(bundle) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(bundle.model, nnx.Param))]


def test_hf2flax_flax2hf_hf2flax_keeps_weights_and_tokenizer(tmp_path, capsys):
    source = _hf_dir_with_tokenizer(tmp_path / "hf")
    assert main(["convert", "hf2flax", str(source), str(tmp_path / "one")]) == 0
    assert "with its tokenizer.json" in capsys.readouterr().out
    first = load_bundle(tmp_path / "one")  # a bundle: no --tokenizer needed
    assert first.tokenizer.family == "pythia" and first.tokenizer.eos_id == 0

    assert main(["convert", "flax2hf", str(tmp_path / "one"), str(tmp_path / "hf2")]) == 0
    tokenizer_bytes = (source / "tokenizer.json").read_bytes()
    assert (tmp_path / "hf2" / "tokenizer.json").read_bytes() == tokenizer_bytes
    assert json.loads((tmp_path / "hf2" / "config.json").read_text())["eos_token_id"] == 0

    assert main(["convert", "hf2flax", str(tmp_path / "hf2"), str(tmp_path / "two")]) == 0
    second = load_bundle(tmp_path / "two")
    assert (tmp_path / "two" / "tokenizer.json").read_bytes() == tokenizer_bytes
    for a, b in zip(_params(first), _params(second), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_tokenizer_that_disagrees_with_its_config_is_one_line(tmp_path, capsys):
    wrong_eos = _hf_dir_with_tokenizer(tmp_path / "eos")
    config = json.loads((wrong_eos / "config.json").read_text())
    config["eos_token_id"] = 7
    (wrong_eos / "config.json").write_text(json.dumps(config))
    capsys.readouterr()  # the reference writer's progress bars
    assert main(["convert", "hf2flax", str(wrong_eos), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "eos_token_id is 7" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()

    small = tmp_path / "small"
    ref.pythia(small, vocab_size=97, bos_token_id=0, eos_token_id=0)
    neox_style_tokenizer(TEXTS, small / "tokenizer.json", vocab_size=300)
    assert main(["convert", "hf2flax", str(small), str(tmp_path / "out")]) == 2
    assert "more than config.json's vocab_size 97" in capsys.readouterr().err


def test_a_sentencepiece_bundle_comes_back_with_its_own_model_file(tmp_path):
    from tests.support.trained_model import pbmc_workdir

    run = pbmc_workdir()
    original = load_bundle(run).tokenizer
    assert main(["convert", "flax2hf", str(run), str(tmp_path / "hf")]) == 0
    assert main(["convert", "hf2flax", str(tmp_path / "hf"), str(tmp_path / "back")]) == 0
    back = load_bundle(tmp_path / "back").tokenizer
    assert back.format == "sentencepiece" and back.sha256 == original.sha256
