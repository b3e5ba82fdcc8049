"""The output layer's per-token scores: scipy's log-softmax in float64, the same values and
gradients chunked or whole, and no [B, T, V] logits in the compiled chunked program."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from c2s_jax.models.output import Unembedding, chunk_length, target_scores

B, T, D, V = 2, 12, 8, 37


def _inputs(softcap=3.0, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(0, 1, (B, T, D)), jnp.float32)
    weight = jnp.asarray(rng.normal(0, 1, (V, D)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, V, (B, T)), jnp.int32)
    layer = Unembedding(weight, "btd,vd->btv", ("vocab", None), softcap, dtype)
    return x, layer, targets


@pytest.mark.parametrize("chunk", [T, 4, 5, 1])
def test_scores_are_scipy_log_softmax(chunk):
    x, layer, targets = _inputs()
    target, log_norm = target_scores(x, layer, targets, chunk)
    logits = np.einsum(
        "btd,vd->btv", np.asarray(x, np.float64), np.asarray(layer.weight, np.float64)
    )
    logits = 3.0 * np.tanh(logits / 3.0)
    want = np.take_along_axis(
        scipy.special.log_softmax(logits, -1), np.asarray(targets)[..., None], -1
    )
    assert target.dtype == log_norm.dtype == jnp.float32
    np.testing.assert_allclose(target - log_norm, want[..., 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_norm, scipy.special.logsumexp(logits, -1), rtol=1e-5)


def test_chunks_give_the_whole_gradient():
    x, layer, targets = _inputs(seed=1)
    weights_BT = jnp.asarray(np.random.default_rng(2).normal(0, 1, (B, T)), jnp.float32)

    def loss(x, weight, chunk):
        scored = Unembedding(weight, layer.spec, layer.axes, layer.softcap, layer.dtype)
        target, log_norm = target_scores(x, scored, targets, chunk)
        return jnp.sum(weights_BT * (target - log_norm) + 0.1 * log_norm**2)

    whole = jax.grad(loss, argnums=(0, 1))(x, layer.weight, T)
    chunked = jax.grad(loss, argnums=(0, 1))(x, layer.weight, 4)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_the_compiled_gradient_never_holds_all_logits():
    x, layer, targets = _inputs(dtype="float32")

    def loss(x, weight):
        scored = Unembedding(weight, layer.spec, layer.axes, layer.softcap, layer.dtype)
        target, log_norm = target_scores(x, scored, targets, 3)
        return jnp.sum(target - log_norm)

    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, layer.weight).compile().as_text()
    shapes = {tuple(map(int, s.split(","))) for s in re.findall(r"f32\[([\d,]+)\]", hlo)}
    assert (B, T, V) not in shapes and (B * T, V) not in shapes
    assert (B, 3, V) in shapes


def test_chunks_divide_the_length():
    assert [chunk_length(12, c) for c in (12, 5, 4, 100, 1)] == [12, 4, 4, 12, 1]
    assert chunk_length(8192, 512) == 512 and chunk_length(100, 512) == 100
