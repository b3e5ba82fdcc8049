"""The CPU-laid-out einsums give the plain einsum's values and gradients, and keep their
outputs under the "dots" remat policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.models import decoder, einsum

# Every einsum the models differentiate, with small shapes of the right structure.
EINSUMS = {
    "btd,dnh->btnh": ((2, 5, 8), (8, 3, 4)),
    "btnh,nhd->btd": ((2, 5, 3, 4), (3, 4, 8)),
    "btd,df->btf": ((2, 5, 8), (8, 12)),
    "btf,fd->btd": ((2, 5, 12), (12, 8)),
    "btd,vd->btv": ((2, 5, 8), (20, 8)),
    "btd,dv->btv": ((2, 5, 8), (8, 20)),
    "btkgh,bskh->bkgts": ((2, 5, 2, 3, 4), (2, 6, 2, 4)),
    "bkgts,bskh->btkgh": ((2, 2, 3, 5, 6), (2, 6, 2, 4)),
}


@pytest.mark.parametrize("spec", sorted(EINSUMS))
def test_values_and_gradients_equal_plain_einsum(spec):
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in EINSUMS[spec])
    plain = jnp.einsum(spec, a, b)
    for fn in (einsum.einsum, einsum.project):
        np.testing.assert_allclose(jax.jit(fn, static_argnums=0)(spec, a, b), plain, rtol=1e-5)
    r = jnp.asarray(rng.normal(size=plain.shape), jnp.float32)

    def grads(fn):
        return jax.jit(jax.grad(lambda a, b: jnp.sum(fn(spec, a, b) * r), argnums=(0, 1)))(a, b)

    expected = grads(jnp.einsum)
    for fn in (einsum.einsum, einsum.project):
        for ours, want in zip(grads(fn), expected, strict=True):
            np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)


def test_dots_remat_policy_keeps_projection_outputs(capsys):
    x, w1, w2 = jnp.ones((2, 3, 4)), jnp.ones((4, 5)), jnp.ones((5, 4))

    def mlp(x, w1, w2):
        h = jnp.tanh(einsum.project("btd,df->btf", x, w1))
        return jnp.sum(jnp.sin(einsum.project("btf,fd->btd", h, w2)))

    policy = decoder.REMAT_POLICIES["dots"]
    jax.ad_checkpoint.print_saved_residuals(jax.checkpoint(mlp, policy=policy), x, w1, w2)
    saved = capsys.readouterr().out
    assert "f32[2,3,5] named 'projection'" in saved
    assert "f32[2,3,4] named 'projection'" in saved
