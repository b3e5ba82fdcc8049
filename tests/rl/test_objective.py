"""The GRPO objective against a float64 NumPy reference: loss, gradient, aux, advantages."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.rl.objective import group_advantages, grpo_loss

CLIP_EPS = 0.2


def _batch(seed: int = 0):
    """Log-probs whose ratios fall on both sides of both clip bounds, and a ragged mask.

    The last sequence has no completion token, so the sequence mean must skip it.
    """
    rng = np.random.default_rng(seed)
    B, T = 6, 7
    old_BT = np.log(rng.uniform(0.05, 0.9, (B, T)))
    logp_BT = old_BT + rng.normal(0.0, 0.4, (B, T))
    ref_BT = old_BT + rng.normal(0.0, 0.3, (B, T))
    advantages_B = np.array([1.3, -0.7, 0.0, -1.9, 0.6, 2.0])
    lengths_B = np.array([7, 3, 5, 1, 6, 0])
    mask_BT = (np.arange(T)[None, :] < lengths_B[:, None]).astype(np.float64)
    ratio_BT = np.exp(logp_BT - old_BT)
    # Keep ratios off the clip bounds, where the branch taken is a matter of rounding.
    for bound in (1 - CLIP_EPS, 1 + CLIP_EPS, 1 + 0.28):
        assert np.abs(ratio_BT - bound).min() > 1e-3
    return logp_BT, old_BT, ref_BT, advantages_B, mask_BT


def _reference(logp, old, ref, adv, mask, clip_eps, clip_high, beta, kl_estimator, aggregation):
    """(loss, d loss / d logp, counts) written out token by token in float64."""
    B, T = logp.shape
    lengths = mask.sum(axis=1)
    sequences = int((lengths > 0).sum())
    loss, grad = 0.0, np.zeros((B, T))
    clipped_low = clipped_high = 0
    for b, t in itertools.product(range(B), range(T)):
        if not mask[b, t]:
            continue
        weight = 1 / mask.sum() if aggregation == "token_mean" else 1 / (lengths[b] * sequences)
        ratio = np.exp(logp[b, t] - old[b, t])
        unclipped = ratio * adv[b]
        clipped = min(max(ratio, 1 - clip_eps), 1 + clip_high) * adv[b]
        if clipped < unclipped:
            token_loss, token_grad = -clipped, 0.0  # the clipped branch is constant in logp
            clipped_low += adv[b] < 0
            clipped_high += adv[b] > 0
        else:
            token_loss, token_grad = -unclipped, -unclipped
        if ref is not None:
            gap = ref[b, t] - logp[b, t]
            if kl_estimator == "k1":
                token_loss += beta * -gap
                token_grad += beta
            else:
                token_loss += beta * (np.exp(gap) - gap - 1)
                token_grad += beta * (1 - np.exp(gap))
        loss += weight * token_loss
        grad[b, t] = weight * token_grad
    return loss, grad, clipped_low, clipped_high


CASES = [
    (aggregation, kl, high, 0.04)
    for aggregation in ("sequence_mean_token_mean", "token_mean")
    for kl in ("k1", "k3")
    for high in (None, 0.28)
] + [("sequence_mean_token_mean", None, None, 0.0), ("token_mean", None, 0.28, 0.0)]


@pytest.mark.parametrize("aggregation, kl_estimator, clip_high, beta", CASES)
def test_loss_gradient_and_aux_match_numpy(aggregation, kl_estimator, clip_high, beta):
    logp, old, ref, adv, mask = _batch()
    ref_or_none = None if kl_estimator is None else ref

    def loss_fn(logp_BT):
        return grpo_loss(
            logp_BT,
            jnp.asarray(old, jnp.float32),
            None if ref_or_none is None else jnp.asarray(ref_or_none, jnp.float32),
            jnp.asarray(adv, jnp.float32),
            jnp.asarray(mask),
            clip_eps=CLIP_EPS,
            clip_eps_high=clip_high,
            beta=beta,
            kl_estimator=kl_estimator or "k3",
            aggregation=aggregation,
        )

    (loss, aux), grad = jax.value_and_grad(loss_fn, has_aux=True)(jnp.asarray(logp, jnp.float32))
    high = CLIP_EPS if clip_high is None else clip_high
    want_loss, want_grad, low_count, high_count = _reference(
        logp, old, ref_or_none, adv, mask, CLIP_EPS, high, beta, kl_estimator, aggregation
    )
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=1e-7)

    tokens = mask.sum()
    assert low_count > 0 and high_count > 0  # the batch exercises both clip bounds
    assert float(aux["tokens"]) == tokens
    np.testing.assert_allclose(float(aux["clip_low_fraction"]), low_count / tokens, rtol=1e-6)
    np.testing.assert_allclose(float(aux["clip_high_fraction"]), high_count / tokens, rtol=1e-6)
    np.testing.assert_allclose(
        float(aux["clip_fraction"]), (low_count + high_count) / tokens, rtol=1e-6
    )
    ratio = np.exp(logp - old)
    np.testing.assert_allclose(float(aux["ratio"]), (ratio * mask).sum() / tokens, rtol=1e-5)
    approx_kl = (ratio - 1 - np.log(ratio)) * mask
    np.testing.assert_allclose(float(aux["approx_kl"]), approx_kl.sum() / tokens, rtol=1e-4)
    if ref_or_none is None:
        assert "kl" not in aux
    else:
        gap = ref - logp
        kl = -gap if kl_estimator == "k1" else np.exp(gap) - gap - 1
        np.testing.assert_allclose(float(aux["kl"]), (kl * mask).sum() / tokens, rtol=1e-4)


def test_wider_upper_clip_keeps_gradient_of_tokens_between_the_bounds():
    adv = jnp.ones(1)
    mask = jnp.ones((1, 1))
    logp = jnp.log(jnp.full((1, 1), 1.25))  # ratio 1.25: beyond 1.2, within 1.28

    def grad_with(clip_high):
        def loss_fn(logp_BT):
            zeros = jnp.zeros((1, 1))
            return grpo_loss(
                logp_BT, zeros, None, adv, mask, clip_eps=0.2, clip_eps_high=clip_high, beta=0.0
            )[0]

        return float(jax.grad(loss_fn)(logp)[0, 0])

    assert grad_with(None) == 0.0
    np.testing.assert_allclose(grad_with(0.28), -1.25, rtol=1e-6)


@pytest.mark.parametrize("aggregation", ["sequence_mean_token_mean", "token_mean"])
def test_at_ratio_one_the_gradient_is_the_plain_policy_gradient(aggregation):
    logp, _, _, adv, mask = _batch(seed=1)
    logp = jnp.asarray(logp, jnp.float32)

    def loss_fn(logp_BT):
        # The same traced array as old log-probs: only the stop-gradient inside the loss
        # keeps the ratio's gradient from cancelling to 0.
        kwargs = dict(clip_eps=CLIP_EPS, beta=0.0, aggregation=aggregation)
        return grpo_loss(logp_BT, logp_BT, None, jnp.asarray(adv), jnp.asarray(mask), **kwargs)[0]

    grad = np.asarray(jax.jit(jax.grad(loss_fn))(logp))
    lengths = mask.sum(axis=1, keepdims=True)
    if aggregation == "token_mean":
        want = -adv[:, None] * mask / mask.sum()
    else:
        want = -adv[:, None] * mask / np.maximum(lengths, 1) / (lengths > 0).sum()
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-9)


def test_loss_refuses_unknown_options_and_beta_without_reference():
    x = jnp.zeros((1, 2))
    kwargs = dict(clip_eps=0.2, beta=0.0)
    with pytest.raises(ValueError, match="kl_estimator must be one of"):
        grpo_loss(x, x, x, jnp.ones(1), x, kl_estimator="k2", **kwargs)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        grpo_loss(x, x, x, jnp.ones(1), x, aggregation="sum", **kwargs)
    with pytest.raises(ValueError, match="needs reference log-probs"):
        grpo_loss(x, x, None, jnp.ones(1), x, clip_eps=0.2, beta=0.1)


def test_group_advantages_use_the_population_std_per_group():
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(3, 5))
    rewards[2] = 0.5  # a group that scores the same everywhere learns nothing
    got = np.asarray(group_advantages(jnp.asarray(rewards)))
    mean = rewards.mean(axis=1, keepdims=True)
    want = (rewards - mean) / (rewards.std(axis=1, ddof=0, keepdims=True) + 1e-4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[2], 0.0)
    np.testing.assert_allclose(got[:2].mean(axis=1), 0.0, atol=1e-6)
