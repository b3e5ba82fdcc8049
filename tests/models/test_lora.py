"""LoRA adapters: neutral when fresh, trainable alone, and merge == apply."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from c2s_jax.models import build_model, get_config
from c2s_jax.models.lora import LoRA, with_lora


@pytest.fixture(scope="module")
def model():
    # The adapter code is family-independent; Gemma-2 has the most target kinds.
    return build_model(get_config("gemma2_tiny", dtype="float32"), rngs=nnx.Rngs(0))


def tokens_BT():
    return jnp.asarray(np.random.default_rng(0).integers(0, 512, (2, 9)))


@nnx.jit
def forward(model, tokens):
    return model(tokens)


def randomize_b(lora):
    for i, key in enumerate(sorted(lora.b)):
        lora.b[key][...] = 0.1 * jax.random.normal(jax.random.key(i), lora.b[key].shape)


def test_fresh_adapters_change_nothing(model):
    lora = LoRA(model, rank=4, alpha=8.0, targets=("wq", "wv", "wo"), rngs=nnx.Rngs(1))
    assert lora.a["layers.attn.wq"].shape == (2, 64, 4)
    assert lora.b["layers.attn.wo"].shape == (2, 4, 64)
    np.testing.assert_array_equal(
        forward(with_lora(model, lora), tokens_BT()), forward(model, tokens_BT())
    )


def test_applying_adapters_leaves_the_base_model_unchanged(model):
    lora = LoRA(model, rank=2, alpha=2.0, targets=("wk", "wo"), rngs=nnx.Rngs(1))
    randomize_b(lora)
    before = nnx.clone(nnx.state(model, nnx.Param))
    applied = forward(with_lora(model, lora), tokens_BT())
    assert float(jnp.max(jnp.abs(applied - forward(model, tokens_BT())))) > 1e-3
    for x, y in zip(
        jax.tree.leaves(before), jax.tree.leaves(nnx.state(model, nnx.Param)), strict=True
    ):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_training_updates_only_adapters(model):
    lora = LoRA(model, rank=4, alpha=4.0, rngs=nnx.Rngs(2))
    base = nnx.clone(nnx.state(model, nnx.Param))
    x = tokens_BT()
    optimizer = nnx.Optimizer(lora, optax.adam(1e-2), wrt=nnx.LoRAParam)

    @nnx.jit
    def step(model, lora, optimizer):
        def loss_fn(model, lora):
            logits = with_lora(model, lora)(x[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, x[:, 1:]).mean()

        loss, grads = nnx.value_and_grad(loss_fn, argnums=1)(model, lora)
        optimizer.update(lora, grads)
        return loss

    losses = [float(step(model, lora, optimizer)) for _ in range(5)]
    assert losses[-1] < losses[0]
    for x0, x1 in zip(
        jax.tree.leaves(base), jax.tree.leaves(nnx.state(model, nnx.Param)), strict=True
    ):
        np.testing.assert_array_equal(x0, x1)


def test_bad_targets():
    model = build_model(get_config("pythia_tiny"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cannot adapt \\['embed'\\]"):
        LoRA(model, rank=2, alpha=1.0, targets=("embed",), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no parameters named \\('w_gate',\\)"):
        LoRA(model, rank=2, alpha=1.0, targets=("w_gate",), rngs=nnx.Rngs(0))
