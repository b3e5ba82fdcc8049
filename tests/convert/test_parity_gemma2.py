"""Gemma-2 loaded from HF safetensors gives transformers' float32 logits."""

import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.convert import load_hf
from tests.convert import hf_reference as ref

CASES = {
    # GQA 2:1, head_dim (16) != d_model / heads (12), query_pre_attn_scalar (24) != head_dim,
    # window longer than the sequence.
    "gqa2": dict(query_pre_attn_scalar=24),
    # Plain multi-head, sliding window (5) shorter than the sequence, softcaps low enough
    # that the tanh bends the logits.
    "mha_window_softcap": dict(
        num_key_value_heads=4,
        head_dim=12,
        query_pre_attn_scalar=12,
        sliding_window=5,
        attn_logit_softcapping=2.0,
        final_logit_softcapping=3.0,
    ),
    # GQA 4:1 with a window and four layers (two sliding, two global).
    "gqa4_window": dict(
        num_attention_heads=8, num_key_value_heads=2, num_hidden_layers=4, sliding_window=3
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    torch_model = ref.gemma2(path, **CASES[request.param])
    model, cfg = load_hf(path, compute_dtype="float32")
    return torch_model, model, cfg


def test_logits_match(pair):
    torch_model, model, _ = pair
    tokens = np.random.default_rng(0).integers(0, 97, (2, 16))
    ref.assert_close(model(jnp.asarray(tokens)), ref.logits(torch_model, tokens))


def test_config_read(pair):
    torch_model, _, cfg = pair
    hf = torch_model.config
    assert cfg.query_pre_attn_scalar == hf.query_pre_attn_scalar
    assert cfg.head_dim == hf.head_dim
    assert cfg.num_kv_heads == hf.num_key_value_heads
    assert cfg.layer_windows[:2] == (hf.sliding_window, 0)


def test_left_padding_matches_attention_mask(pair):
    torch_model, model, _ = pair
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 97, (2, 14))
    lengths = np.array([14, 9])
    valid = np.arange(14)[None, :] >= (14 - lengths)[:, None]
    positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
    expected = ref.logits(
        torch_model, tokens, attention_mask=valid.astype(np.int64), position_ids=positions
    )
    ours = np.asarray(
        model(
            jnp.asarray(tokens),
            positions=jnp.asarray(positions),
            segment_ids=jnp.asarray(valid.astype(np.int32)),
        )
    )
    ref.assert_close(ours[valid], expected[valid])
    # The short row alone, without padding, gives the same logits.
    alone = ref.logits(torch_model, tokens[1:, 14 - 9 :])
    ref.assert_close(ours[1, 14 - 9 :], alone[0])


def test_packed_segments_equal_each_alone(pair):
    torch_model, model, _ = pair
    rng = np.random.default_rng(2)
    lengths = [7, 5, 4]
    pieces = [rng.integers(0, 97, n) for n in lengths]
    tokens, segment_ids, positions = ref.pack(pieces)
    packed = np.asarray(
        model(
            jnp.asarray(tokens),
            positions=jnp.asarray(positions),
            segment_ids=jnp.asarray(segment_ids),
        )
    )[0]
    start = 0
    for piece in pieces:
        alone = ref.logits(torch_model, piece[None])[0]
        ref.assert_close(packed[start : start + len(piece)], alone)
        start += len(piece)
