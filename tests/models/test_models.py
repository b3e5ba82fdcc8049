"""Model-level behaviour that needs no reference implementation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from c2s_jax.models import build_model, get_config
from c2s_jax.models.registry import abstract_model

FAMILIES = ["gemma2_tiny", "pythia_tiny"]


def tiny_config(name, **overrides):
    overrides.setdefault("dtype", "float32")
    if name.startswith("gemma2"):
        overrides.setdefault("sliding_window", 3)
    return get_config(name, **overrides)


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return build_model(tiny_config(request.param), rngs=nnx.Rngs(0))


@nnx.jit
def forward(model, tokens, segment_ids=None, cache=None):
    return model(tokens, segment_ids=segment_ids, cache=cache)


def tokens_BT(B=2, T=10, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 512, (B, T)))


def test_tokens_only_call_gives_float32_logits(model):
    logits = model(tokens_BT())
    assert logits.shape == (2, 10, 512) and logits.dtype == jnp.float32


def test_cache_in_chunks_equals_full_forward(model):
    x = tokens_BT(T=11)
    full = forward(model, x)
    cache = model.init_cache(batch=2, max_len=16)
    pieces = []
    for start, stop in [(0, 4), (4, 9), (9, 11)]:
        logits, cache = forward(model, x[:, start:stop], cache=cache)
        pieces.append(logits)
    assert int(cache.end) == 11
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=1e-5, rtol=1e-5)


def test_padding_rows_stay_finite_and_do_not_leak(model):
    x = tokens_BT()
    segment_ids = jnp.array([[1] * 6 + [0] * 4, [0] * 10])
    logits = forward(model, x, segment_ids)
    assert bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_allclose(logits[0, :6], forward(model, x[:1, :6])[0], atol=1e-5, rtol=1e-5)
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x, segment_ids=segment_ids)[0, :6])))(model)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", FAMILIES)
def test_remat_and_unrolling_keep_loss_and_grads(name):
    x = tokens_BT()

    @nnx.jit
    def loss_and_grads(model):
        return nnx.value_and_grad(lambda m: jnp.mean(jax.nn.log_softmax(m(x))[..., 0]))(model)

    loss, grads = loss_and_grads(build_model(tiny_config(name), rngs=nnx.Rngs(0)))
    for variant in [dict(remat="full"), dict(remat="dots"), dict(scan_layers=False)]:
        other = build_model(tiny_config(name, **variant), rngs=nnx.Rngs(0))
        loss_r, grads_r = loss_and_grads(other)
        assert float(loss) == pytest.approx(float(loss_r), rel=1e-6)
        for g, g_r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_r), strict=True):
            np.testing.assert_allclose(g, g_r, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", FAMILIES)
def test_traced_program_does_not_grow_with_depth(name):
    def num_eqns(num_layers):
        graphdef, state = nnx.split(abstract_model(tiny_config(name, num_layers=num_layers)))
        jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, tokens_BT())
        return len(jaxpr.eqns)

    assert num_eqns(2) == num_eqns(8)


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_compute_with_float32_params(name):
    x = tokens_BT()
    model = build_model(tiny_config(name, dtype="bfloat16"), rngs=nnx.Rngs(0))
    logits = forward(model, x)
    assert model.layers.attn.wq[...].dtype == jnp.float32
    assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
    reference = forward(build_model(tiny_config(name), rngs=nnx.Rngs(0)), x)
    assert float(jnp.max(jnp.abs(logits - reference))) < 0.05 * float(jnp.max(jnp.abs(reference)))
