"""`c2s convert`: HF -> orbax checkpoint -> HF through the command line, and its errors."""

import json

import pytest
import torch

from c2s_jax.checkpoints.orbax_io import CONFIG_FILE
from c2s_jax.cli import main
from tests.checkpoints import hf_reference as ref


@pytest.mark.parametrize(
    "family, torch_dtype, dtype",
    [("gemma2", torch.float32, "float32"), ("pythia", torch.bfloat16, "bfloat16")],
)
def test_hf_flax_hf_is_bit_exact(family, torch_dtype, dtype, tmp_path):
    src, ckpt, out = tmp_path / "src", tmp_path / "ckpt", tmp_path / "out"
    getattr(ref, family)(src, dtype=torch_dtype)
    assert main(["convert", "hf2flax", str(src), str(ckpt), "--dtype", dtype]) == 0
    saved = json.loads((ckpt / CONFIG_FILE).read_text())
    assert (saved["family"], saved["param_dtype"]) == (family, dtype)
    # No --dtype: the tensors are stored in the checkpoint's parameter dtype.
    assert main(["convert", "flax2hf", str(ckpt), str(out)]) == 0
    ref.assert_same_tensors(src, out)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    ref.pythia(path)
    return path


def run_failing(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s convert: error: ") and len(err.strip().splitlines()) == 1
    return err


def test_missing_hf_checkpoint(tmp_path, capsys):
    err = run_failing(["convert", "hf2flax", str(tmp_path), str(tmp_path / "out")], capsys)
    assert f"{tmp_path / 'config.json'} not found" in err and "HF_DIR must hold" in err
    assert not (tmp_path / "out").exists()


def test_output_directory_not_empty(hf_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    err = run_failing(["convert", "hf2flax", str(hf_dir), str(tmp_path / "out")], capsys)
    assert f"{tmp_path / 'out'} exists and is not an empty directory" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


def test_flax2hf_of_a_hf_directory(hf_dir, tmp_path, capsys):
    err = run_failing(["convert", "flax2hf", str(hf_dir), str(tmp_path / "out")], capsys)
    assert f"{hf_dir} is an HF checkpoint (config.json, no {CONFIG_FILE})" in err
    assert "CKPT_DIR must come from" in err


def test_unsupported_architecture(hf_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in hf_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForCausalLM"]}))
    err = run_failing(["convert", "hf2flax", str(bad), str(tmp_path / "out")], capsys)
    assert f"{bad / 'config.json'}: unknown architecture ['LlamaForCausalLM']" in err


def test_model_config_that_does_not_fit_the_parameters(hf_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "hf2flax", str(hf_dir), str(ckpt)]) == 0
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    (ckpt / CONFIG_FILE).write_text(json.dumps({**config, "mlp_dim": config["mlp_dim"] + 1}))
    err = run_failing(["convert", "flax2hf", str(ckpt), str(tmp_path / "out")], capsys)
    assert f"{ckpt / 'params'} does not match {CONFIG_FILE}" in err
    assert "parameter layers/mlp/b_in has shape (2, 96), expected (2, 97)" in err
    (ckpt / CONFIG_FILE).write_text(json.dumps({**config, "family": "llama"}))
    err = run_failing(["convert", "flax2hf", str(ckpt), str(tmp_path / "out")], capsys)
    assert "unknown model family 'llama'" in err
