"""HF -> ours -> HF reproduces every tensor bit for bit; exports load in transformers."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import AutoModelForCausalLM

from c2s_jax.checkpoints import export_hf, load_hf
from c2s_jax.checkpoints.safetensors_io import INDEX_FILE, SINGLE_FILE
from c2s_jax.models import build_model, get_config
from tests.checkpoints import hf_reference as ref


@pytest.mark.parametrize(
    "family, torch_dtype, dtype",
    [("gemma2", torch.float32, "float32"), ("pythia", torch.bfloat16, "bfloat16")],
)
def test_hf_ours_hf_is_bit_exact(family, torch_dtype, dtype, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    getattr(ref, family)(src, dtype=torch_dtype)
    model, _ = load_hf(src, dtype="float32")
    export_hf(model, out, dtype=dtype)
    ref.assert_same_tensors(src, out)
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype


def test_sharded_checkpoints_both_ways(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    torch_model = ref.pythia(tmp_path / "single")
    torch_model.save_pretrained(src, max_shard_size="60KB")
    assert (src / INDEX_FILE).is_file() and not (src / SINGLE_FILE).exists()
    model, _ = load_hf(src, compute_dtype="float32")
    export_hf(model, out, max_shard_bytes=50_000)
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (out / INDEX_FILE).is_file()
    ref.assert_same_tensors(src, out)
    reloaded = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    tokens = np.random.default_rng(0).integers(0, 97, (1, 10))
    np.testing.assert_array_equal(ref.logits(reloaded, tokens), ref.logits(torch_model, tokens))


@pytest.mark.parametrize("name", ["gemma2_tiny", "pythia_tiny"])
def test_export_of_fresh_model_matches_in_transformers(name, tmp_path):
    model = build_model(get_config(name, dtype="float32"), rngs=nnx.Rngs(3))
    export_hf(model, tmp_path)
    kwargs = {"attn_implementation": "eager"} if name.startswith("gemma2") else {}
    torch_model = AutoModelForCausalLM.from_pretrained(tmp_path, **kwargs).eval()
    tokens = np.random.default_rng(0).integers(0, 512, (2, 9))
    ref.assert_close(model(jnp.asarray(tokens)), ref.logits(torch_model, tokens))

    reloaded, cfg = load_hf(tmp_path, compute_dtype="float32")
    assert cfg == model.config
    same = jax.tree.map(
        lambda x, y: bool(jnp.array_equal(x, y)), nnx.state(model), nnx.state(reloaded)
    )
    assert all(jax.tree.leaves(same))
