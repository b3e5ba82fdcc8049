"""Numerics of the shared building blocks against direct numpy formulas."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from c2s_jax.models import decoder, layers


def test_rmsnorm_formula():
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    norm = layers.RMSNorm(8, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.linspace(-0.5, 0.5, 8)
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * (1 + np.linspace(-0.5, 0.5, 8))
    np.testing.assert_allclose(norm(jnp.asarray(x)), expected, rtol=1e-5)


def test_layernorm_formula():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 3, 8)).astype(np.float32)
    norm = layers.LayerNorm(8, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.full(8, 2.0)
    norm.bias[...] = jnp.full(8, 0.5)
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(norm(jnp.asarray(x)), 2.0 * expected + 0.5, rtol=1e-4, atol=1e-5)


def test_rope_scores_depend_on_offset_only():
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32) for _ in range(2))

    def score(pq, pk):
        rq = layers.apply_rope(q, jnp.array([[pq]]), base=10_000.0, rotary_dim=16)
        rk = layers.apply_rope(k, jnp.array([[pk]]), base=10_000.0, rotary_dim=16)
        return float(jnp.sum(rq * rk))

    assert score(5, 2) == pytest.approx(score(103, 100), rel=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), rel=1e-2)


def test_rope_half_split_and_partial_pass_through():
    x = jnp.arange(1.0, 9.0).reshape(1, 1, 1, 8)
    y = layers.apply_rope(x, jnp.array([[1]]), base=10_000.0, rotary_dim=4)
    # Features 4.. are outside the rotary block.
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])
    # Feature 0 pairs with feature 2 (half split), rotated by angle 1 * base**0 = 1 rad.
    c, s = np.cos(1.0), np.sin(1.0)
    np.testing.assert_allclose(y[0, 0, 0, [0, 2]], [1 * c - 3 * s, 3 * c + 1 * s], rtol=1e-6)


def test_attention_mask_segments_causality_window():
    positions = jnp.array([[0, 1, 2, 3, 0, 1]])
    segments = jnp.array([[1, 1, 1, 1, 2, 0]])
    layout = layers.TokenLayout(positions, segments, positions, segments, jnp.array(0))
    full = np.asarray(layers.attention_mask(layout, 0))[0]
    expected = np.array(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ],
        bool,
    )
    np.testing.assert_array_equal(full, expected)
    windowed = np.asarray(layers.attention_mask(layout, 2))[0]
    expected[2, 0] = expected[3, 0] = expected[3, 1] = False
    np.testing.assert_array_equal(windowed, expected)


def test_softcap_bounds_and_keeps_small_values():
    x = jnp.array([-1e4, -0.01, 0.0, 0.01, 1e4])
    y = layers.softcap(x, 30.0)
    assert float(jnp.max(jnp.abs(y))) <= 30.0
    np.testing.assert_allclose(y[1:4], x[1:4], atol=1e-6)
    assert layers.softcap(x, None) is x


def test_unknown_remat_policy_is_rejected():
    with pytest.raises(ValueError, match="unknown remat policy 'some'"):
        decoder.run_layers(
            None, None, None, positions=None, segment_ids=None, cache=None, remat="some"
        )
