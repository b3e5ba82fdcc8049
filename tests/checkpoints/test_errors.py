"""Bad checkpoints fail loudly, naming the tensor and the shape expected."""

import json
import re
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from c2s_jax.checkpoints import CheckpointError, load_hf
from c2s_jax.checkpoints.safetensors_io import INDEX_FILE, SINGLE_FILE
from c2s_jax.cli import main
from c2s_jax.errors import InputError
from tests.checkpoints import hf_reference as ref


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gemma2")
    ref.gemma2(path)
    return path


@pytest.fixture(scope="module")
def pythia_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pythia")
    ref.pythia(path)
    return path


def edited_copy(src, dst, edit_tensors=None, edit_config=None):
    shutil.copytree(src, dst)
    if edit_tensors:
        tensors = load_file(dst / SINGLE_FILE)
        edit_tensors(tensors)
        save_file(tensors, dst / SINGLE_FILE, metadata={"format": "pt"})
    if edit_config:
        config = json.loads((dst / "config.json").read_text())
        edit_config(config)
        (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_missing_tensor(gemma_dir, tmp_path):
    name = "model.layers.1.self_attn.k_proj.weight"
    bad = edited_copy(gemma_dir, tmp_path / "c", edit_tensors=lambda t: t.pop(name))
    with pytest.raises(
        CheckpointError, match=re.escape(f"missing tensor {name} (expected shape (32, 48))")
    ):
        load_hf(bad)


def test_wrong_shape(gemma_dir, tmp_path):
    name = "model.layers.2.mlp.down_proj.weight"

    def shrink(t):
        t[name] = t[name][:, :-1].copy()

    bad = edited_copy(gemma_dir, tmp_path / "c", edit_tensors=shrink)
    with pytest.raises(
        CheckpointError, match=re.escape(f"{name} has shape (48, 79), expected (48, 80)")
    ):
        load_hf(bad)


def test_an_integer_weight_is_refused_not_cast(gemma_dir, tmp_path):
    name = "model.layers.0.mlp.up_proj.weight"

    def to_int(t):
        t[name] = t[name].astype(np.int32)

    bad = edited_copy(gemma_dir, tmp_path / "c", edit_tensors=to_int)
    with pytest.raises(InputError, match=rf"tensor '{re.escape(name)}' is stored as int32, not"):
        load_hf(bad)


def test_unexpected_tensor(gemma_dir, tmp_path):
    def add(t):
        t["model.layers.0.self_attn.q_norm.weight"] = np.ones(16, np.float32)

    bad = edited_copy(gemma_dir, tmp_path / "c", edit_tensors=add)
    with pytest.raises(
        CheckpointError, match=r"unexpected tensor model\.layers\.0\.self_attn\.q_norm"
    ):
        load_hf(bad)


def test_checkpoint_for_fewer_layers_than_config(gemma_dir, tmp_path):
    def more_layers(c):
        c["num_hidden_layers"] = 4
        c["layer_types"] += ["full_attention"]

    bad = edited_copy(gemma_dir, tmp_path / "c", edit_config=more_layers)
    with pytest.raises(CheckpointError, match=r"missing tensor model\.layers\.3\.mlp\.up_proj"):
        load_hf(bad)


def test_unknown_architecture(gemma_dir, tmp_path):
    def llama(c):
        c["architectures"] = ["LlamaForCausalLM"]

    bad = edited_copy(gemma_dir, tmp_path / "c", edit_config=llama)
    with pytest.raises(ValueError, match=r"unknown architecture \['LlamaForCausalLM'\]"):
        load_hf(bad)


def test_unsupported_variant(pythia_dir, tmp_path):
    def sequential(c):
        c["use_parallel_residual"] = False

    bad = edited_copy(pythia_dir, tmp_path / "c", edit_config=sequential)
    with pytest.raises(ValueError, match="use_parallel_residual=False"):
        load_hf(bad)


def test_missing_files(gemma_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf(tmp_path)
    bad = edited_copy(gemma_dir, tmp_path / "c")
    (bad / SINGLE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        load_hf(bad)
    index = {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}
    (bad / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        load_hf(bad)


def test_legacy_neox_buffers_are_skipped(pythia_dir, tmp_path):
    def add_buffers(t):
        t["gpt_neox.layers.0.attention.masked_bias"] = np.array(-1e9, np.float32)
        t["gpt_neox.layers.1.attention.rotary_emb.inv_freq"] = np.ones(2, np.float32)

    ok = edited_copy(pythia_dir, tmp_path / "c", edit_tensors=add_buffers)
    model, _ = load_hf(ok)
    assert model.layers.attn.wq[...].shape == (2, 64, 4, 16)


@pytest.mark.parametrize("damage", ["truncated", "garbled header"])
def test_a_damaged_safetensors_file_is_one_line(gemma_dir, tmp_path, damage, capsys):
    bad = edited_copy(gemma_dir, tmp_path / "c")
    data = (bad / SINGLE_FILE).read_bytes()
    if damage == "truncated":
        (bad / SINGLE_FILE).write_bytes(data[: len(data) // 2])
    else:
        (bad / SINGLE_FILE).write_bytes(data[:8] + b"\xff" * 32 + data[40:])
    out = tmp_path / "flax"
    assert main(["convert", "hf2flax", str(bad), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("c2s convert: error: "), err
    assert "safetensors" in err[0] and not out.exists()
