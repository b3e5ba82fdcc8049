"""Greedy decoding through the KV cache agrees with our full forward and with HF generate."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from c2s_jax.checkpoints import load_hf
from tests.checkpoints import hf_reference as ref

STEPS = 8


@nnx.jit
def _forward(model, tokens, positions, segment_ids):
    return model(tokens, positions=positions, segment_ids=segment_ids)


@nnx.jit
def _forward_cached(model, tokens, positions, segment_ids, cache):
    return model(tokens, positions=positions, segment_ids=segment_ids, cache=cache)


def _left_padded_prompts(rng, lengths, width):
    tokens = rng.integers(3, 97, (len(lengths), width))
    valid = np.arange(width)[None, :] >= (width - np.asarray(lengths))[:, None]
    tokens = np.where(valid, tokens, 0)
    positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
    return tokens, valid.astype(np.int32), positions


def _greedy_cached(model, tokens, segment_ids, positions):
    """Prefill the prompt once, then feed one token per step; returns (tokens, logits)."""
    cache = model.init_cache(tokens.shape[0], tokens.shape[1] + STEPS)
    logits, cache = _forward_cached(model, tokens, positions, segment_ids, cache)
    new, step_logits = [], []
    position = positions[:, -1:]
    for _ in range(STEPS):
        step_logits.append(np.asarray(logits[:, -1]))
        token = jnp.argmax(logits[:, -1], axis=-1)[:, None]
        new.append(np.asarray(token[:, 0]))
        position = position + 1
        logits, cache = _forward_cached(model, token, position, jnp.ones_like(token), cache)
    return np.stack(new, axis=1), np.stack(step_logits, axis=1)


def _greedy_full(model, tokens, segment_ids, positions):
    """Re-run the whole sequence every step; returns (tokens, logits).

    The rows are right-padded to their final length (segment id 0) so that every step
    reuses one compiled forward.
    """
    B, P = tokens.shape
    pad = np.zeros((B, STEPS), np.int32)
    tokens = np.concatenate([tokens, pad], axis=1)
    segment_ids = np.concatenate([segment_ids, pad], axis=1)
    positions = np.concatenate([positions, positions[:, -1:] + 1 + np.arange(STEPS)], axis=1)
    new, step_logits = [], []
    for t in range(P, P + STEPS):
        logits = np.asarray(_forward(model, tokens, positions, segment_ids))[:, t - 1]
        new.append(logits.argmax(-1))
        step_logits.append(logits)
        tokens[:, t], segment_ids[:, t] = new[-1], 1
    return np.stack(new, axis=1), np.stack(step_logits, axis=1)


def _hf_generate(torch_model, tokens, segment_ids):
    with torch.no_grad():
        out = torch_model.generate(
            torch.as_tensor(tokens),
            attention_mask=torch.as_tensor(segment_ids, dtype=torch.int64),
            max_new_tokens=STEPS,
            min_new_tokens=STEPS,
            do_sample=False,
            pad_token_id=0,
        )
    return out[:, tokens.shape[1] :].numpy()


@pytest.mark.parametrize(
    "family, overrides",
    [
        # Window 3 is shorter than prompt + generation, so sliding layers must drop old
        # cache slots.
        ("gemma2", dict(num_attention_heads=8, num_key_value_heads=2, sliding_window=3)),
        ("gemma2", dict(num_key_value_heads=4, head_dim=12, query_pre_attn_scalar=12)),
        ("pythia", dict()),
    ],
)
def test_greedy_decode(family, overrides, tmp_path):
    torch_model = getattr(ref, family)(tmp_path, **overrides)
    model, _ = load_hf(tmp_path, compute_dtype="float32")
    tokens, segment_ids, positions = _left_padded_prompts(np.random.default_rng(0), [6, 4], 6)

    cached, cached_logits = _greedy_cached(model, tokens, segment_ids, positions)
    full, full_logits = _greedy_full(model, tokens, segment_ids, positions)
    np.testing.assert_array_equal(cached, full)
    ref.assert_close(cached_logits, full_logits)
    np.testing.assert_array_equal(cached, _hf_generate(torch_model, tokens, segment_ids))
