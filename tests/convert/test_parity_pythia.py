"""Pythia (GPT-NeoX) loaded from HF safetensors gives transformers' float32 logits."""

import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.convert import load_hf
from tests.convert import hf_reference as ref

CASES = {
    "rotary_quarter": dict(rotary_pct=0.25),
    "rotary_half_base": dict(rotary_pct=0.5, rotary_emb_base=500, num_attention_heads=2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    torch_model = ref.pythia(path, **CASES[request.param])
    model, cfg = load_hf(path, compute_dtype="float32")
    return torch_model, model, cfg


def test_logits_match(pair):
    torch_model, model, _ = pair
    tokens = np.random.default_rng(0).integers(0, 97, (2, 16))
    ref.assert_close(model(jnp.asarray(tokens)), ref.logits(torch_model, tokens))


def test_config_read(pair):
    torch_model, _, cfg = pair
    rope = torch_model.config.rope_parameters
    assert cfg.rotary_pct == rope["partial_rotary_factor"]
    assert cfg.rope_base == rope["rope_theta"]
    assert cfg.rotary_dim == int(cfg.head_dim * cfg.rotary_pct)


def test_fused_qkv_is_split_per_head(pair):
    """Head n's query is rows [3nH, 3nH + H) of the fused weight, not rows [nH, nH + H)."""
    torch_model, model, cfg = pair
    H = cfg.head_dim
    fused = torch_model.gpt_neox.layers[0].attention.query_key_value.weight.detach().numpy()
    wq_DNH = np.asarray(model.layers.attn.wq[...][0])
    wk_DNH = np.asarray(model.layers.attn.wk[...][0])
    for n in range(cfg.num_heads):
        np.testing.assert_array_equal(wq_DNH[:, n, :], fused[3 * n * H : 3 * n * H + H].T)
        np.testing.assert_array_equal(wk_DNH[:, n, :], fused[3 * n * H + H : 3 * n * H + 2 * H].T)


def test_right_padding_matches_attention_mask(pair):
    torch_model, model, _ = pair
    tokens = np.random.default_rng(1).integers(0, 97, (2, 12))
    valid = np.arange(12)[None, :] < np.array([[12], [7]])
    expected = ref.logits(torch_model, tokens, attention_mask=valid.astype(np.int64))
    ours = np.asarray(model(jnp.asarray(tokens), segment_ids=jnp.asarray(valid.astype(np.int32))))
    ref.assert_close(ours[valid], expected[valid])


def test_packed_segments_equal_each_alone(pair):
    torch_model, model, _ = pair
    rng = np.random.default_rng(2)
    pieces = [rng.integers(0, 97, n) for n in (6, 9)]
    tokens, segment_ids, positions = ref.pack(pieces)
    packed = np.asarray(
        model(
            jnp.asarray(tokens),
            positions=jnp.asarray(positions),
            segment_ids=jnp.asarray(segment_ids),
        )
    )[0]
    ref.assert_close(packed[:6], ref.logits(torch_model, pieces[0][None])[0])
    ref.assert_close(packed[6:], ref.logits(torch_model, pieces[1][None])[0])
