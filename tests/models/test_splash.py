"""Splash attention (Pallas, interpret mode on the CPU) against the dot path: packed
segments, padding, sliding windows, logit softcap, grouped key/value heads, forward and
gradients, in float32 to 1e-5 relative."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from c2s_jax import parallel
from c2s_jax.models import build_model, get_config
from c2s_jax.models.splash import _kernel, block_size, computed_entries

# Three 128-token blocks per row, so that windows skip whole blocks.
T = 384


def _packed_rows():
    """Two rows of packed examples (positions restart per example) and trailing padding."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 512, (2, T)).astype(np.int32)
    segments = np.ones((2, T), np.int32)
    segments[0, 150:], segments[0, 300:], segments[1, 200:] = 2, 0, 2
    positions = np.zeros((2, T), np.int32)
    for b in range(2):
        for s in np.unique(segments[b]):
            at = np.flatnonzero(segments[b] == s)
            positions[b, at] = np.arange(at.size)
    return tokens, positions, segments


def _value_and_grads(name, attention, mesh=None, **overrides):
    cfg = get_config(name, dtype="float32", attention=attention, num_layers=2, **overrides)
    graphdef, state = nnx.split(build_model(cfg, rngs=nnx.Rngs(0)))
    tokens, positions, segments = _packed_rows()
    weights = np.random.default_rng(1).normal(0, 1, (2, T, cfg.vocab_size)).astype(np.float32)

    def loss(state):
        with parallel.activation_sharding(mesh, parallel.DEFAULT_RULES):
            logits = nnx.merge(graphdef, state)(tokens, positions=positions, segment_ids=segments)
        return jnp.sum(weights * logits * (segments[..., None] > 0)), logits

    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state)
    return value, logits, grads


def _relative(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))


@pytest.mark.parametrize(
    ("name", "overrides", "on_mesh"),
    [
        # Windows of 100 tokens on even layers, a tight softcap, 4 query heads on 2 kv heads,
        # with the kernel inside a shard_map over a mesh, as a sharded step runs it.
        ("gemma2_tiny", dict(sliding_window=100, attn_logit_softcap=2.0, init_std=0.3), True),
        ("pythia_tiny", dict(init_std=0.3), False),
    ],
    ids=["gemma2", "pythia"],
)
def test_splash_equals_the_dot_path(name, overrides, on_mesh):
    mesh = parallel.make_mesh({"data": -1}) if on_mesh else None
    value, logits, grads = _value_and_grads(name, "dot", mesh, **overrides)
    s_value, s_logits, s_grads = _value_and_grads(name, "splash", mesh, **overrides)
    assert float(s_value) == pytest.approx(float(value), rel=1e-5)
    assert _relative(logits, s_logits) < 1e-5
    worst = max(jax.tree.leaves(jax.tree.map(_relative, grads, s_grads)))
    assert worst < 1e-5


def test_windows_skip_blocks_and_causal_masks_skip_the_upper_triangle():
    assert block_size(384) == 128 and block_size(8192) == 512 and block_size(100) is None
    blocks = 3  # per side of the 384 x 384 score matrix
    causal = computed_entries(_kernel(T, 4, 0, None, True), 4, "fwd")
    assert causal == 4 * (blocks * (blocks + 1) // 2) * 128 * 128
    # A 100-key window touches the diagonal block and the one before it.
    local = computed_entries(_kernel(T, 4, 100, None, True), 4, "fwd")
    assert local == 4 * (2 * blocks - 1) * 128 * 128
    assert computed_entries(_kernel(T, 4, 100, None, True), 4, "dkv") == local


def test_lengths_the_kernel_cannot_tile_are_refused_by_name():
    cfg = get_config("gemma2_tiny", dtype="float32", attention="splash")
    model = build_model(cfg, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible by 128, not 100"):
        model(np.zeros((1, 100), np.int32))
