"""Models loaded from HF safetensors give transformers' float32 logits: whole rows, padded
rows and packed segments, for Gemma-2 and Pythia (GPT-NeoX) in several shapes."""

import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.checkpoints import load_hf
from tests.checkpoints import hf_reference as ref

CASES = {
    # GQA 2:1, head_dim (16) != d_model / heads (12), query_pre_attn_scalar (24) != head_dim,
    # window longer than the sequence.
    "gemma2/gqa2": ("gemma2", dict(query_pre_attn_scalar=24)),
    # Plain multi-head, sliding window (5) shorter than the sequence, softcaps low enough
    # that the tanh bends the logits.
    "gemma2/mha_window_softcap": (
        "gemma2",
        dict(
            num_key_value_heads=4,
            head_dim=12,
            query_pre_attn_scalar=12,
            sliding_window=5,
            attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0,
        ),
    ),
    # GQA 4:1 with a window and four layers (two sliding, two global).
    "gemma2/gqa4_window": (
        "gemma2",
        dict(num_attention_heads=8, num_key_value_heads=2, num_hidden_layers=4, sliding_window=3),
    ),
    "pythia/rotary_quarter": ("pythia", dict(rotary_pct=0.25)),
    "pythia/rotary_half_base": (
        "pythia",
        dict(rotary_pct=0.5, rotary_emb_base=500, num_attention_heads=2),
    ),
}


def cases(family=None):
    return [c for c in sorted(CASES) if family in (None, CASES[c][0])]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """case -> (torch model, our model, our config), each built once."""
    built = {}

    def get(case):
        if case not in built:
            family, overrides = CASES[case]
            path = tmp_path_factory.mktemp(case.replace("/", "-"))
            torch_model = getattr(ref, family)(path, **overrides)
            built[case] = (torch_model, *load_hf(path, compute_dtype="float32"))
        return built[case]

    return get


@pytest.mark.parametrize("case", cases())
def test_logits_match(case, loaded):
    torch_model, model, _ = loaded(case)
    tokens = np.random.default_rng(0).integers(0, 97, (2, 16))
    ref.assert_close(model(jnp.asarray(tokens)), ref.logits(torch_model, tokens))


@pytest.mark.parametrize("case", cases())
def test_padding_matches_attention_mask(case, loaded):
    torch_model, model, _ = loaded(case)
    tokens = np.random.default_rng(1).integers(0, 97, (3, 14))
    # A full row, a left-padded one (generation prompts) and a right-padded one.
    valid = np.ones((3, 14), bool)
    valid[1, :5] = valid[2, 7:] = False
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
    # The left-padded row alone, without padding, gives the same logits.
    ref.assert_close(ours[1, 5:], ref.logits(torch_model, tokens[1:, 5:])[0])


@pytest.mark.parametrize("case", cases())
def test_packed_segments_equal_each_alone(case, loaded):
    torch_model, model, _ = loaded(case)
    rng = np.random.default_rng(2)
    pieces = [rng.integers(0, 97, n) for n in (7, 5, 4)]
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


@pytest.mark.parametrize("case", cases("gemma2"))
def test_gemma2_config_read(case, loaded):
    torch_model, _, cfg = loaded(case)
    hf = torch_model.config
    assert cfg.query_pre_attn_scalar == hf.query_pre_attn_scalar
    assert cfg.head_dim == hf.head_dim
    assert cfg.num_kv_heads == hf.num_key_value_heads
    assert cfg.layer_windows[:2] == (hf.sliding_window, 0)


@pytest.mark.parametrize("case", cases("pythia"))
def test_pythia_config_read(case, loaded):
    torch_model, _, cfg = loaded(case)
    rope = torch_model.config.rope_parameters
    assert cfg.rotary_pct == rope["partial_rotary_factor"]
    assert cfg.rope_base == rope["rope_theta"]
    assert cfg.rotary_dim == int(cfg.head_dim * cfg.rotary_pct)


@pytest.mark.parametrize("case", cases("pythia"))
def test_pythia_fused_qkv_is_split_per_head(case, loaded):
    """Head n's query is rows [3nH, 3nH + H) of the fused weight, not rows [nH, nH + H)."""
    torch_model, model, cfg = loaded(case)
    H = cfg.head_dim
    fused = torch_model.gpt_neox.layers[0].attention.query_key_value.weight.detach().numpy()
    wq_DNH = np.asarray(model.layers.attn.wq[...][0])
    wk_DNH = np.asarray(model.layers.attn.wk[...][0])
    for n in range(cfg.num_heads):
        np.testing.assert_array_equal(wq_DNH[:, n, :], fused[3 * n * H : 3 * n * H + H].T)
        np.testing.assert_array_equal(wk_DNH[:, n, :], fused[3 * n * H + H : 3 * n * H + 2 * H].T)
