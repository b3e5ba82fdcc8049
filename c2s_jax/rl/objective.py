"""The GRPO objective: group-normalized advantages and the clipped policy loss with KL.

Shapes: P prompts with G completions each; B = P * G sequences of T tokens; V vocabulary.
Log-probabilities are natural-log, float32, of the sampled token at each position.
"""

import jax
import jax.numpy as jnp

KL_ESTIMATORS = ("k1", "k3")
AGGREGATIONS = ("sequence_mean_token_mean", "token_mean")


def group_advantages(rewards_PG: jax.Array, eps: float = 1e-4) -> jax.Array:
    """[P, G] float32 advantages: (r - group mean) / (group std + eps).

    The std is the population std (divided by G, not G - 1) of each prompt's G rewards; a
    group whose completions all score the same gets advantage 0 throughout, and `eps` keeps
    near-constant groups from blowing up.
    """
    rewards_PG = jnp.asarray(rewards_PG, jnp.float32)
    mean_P1 = rewards_PG.mean(axis=1, keepdims=True)
    std_P1 = rewards_PG.std(axis=1, keepdims=True)
    return (rewards_PG - mean_P1) / (std_P1 + eps)


def grpo_loss(
    logp_BT: jax.Array,
    old_logp_BT: jax.Array,
    ref_logp_BT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BT: jax.Array,
    *,
    clip_eps: float,
    clip_eps_high: float | None = None,
    beta: float,
    kl_estimator: str = "k3",
    aggregation: str = "sequence_mean_token_mean",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clipped-surrogate GRPO loss with a KL penalty to a frozen reference policy.

    Per completion token, with ratio = exp(logp - old_logp) and A the sequence's advantage:

        surrogate = min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps_high) * A)
        kl        = logp - ref_logp                              (k1)
                  = exp(ref_logp - logp) - (ref_logp - logp) - 1  (k3, >= 0)
        loss      = -surrogate + beta * kl

    Gradients flow through `logp` only: old and reference log-probs and the advantages are
    data. The per-token loss is averaged over the tokens where `mask_BT` is 1:
    'sequence_mean_token_mean' takes each sequence's token mean, then the mean over the
    sequences that have tokens (every completion weighs the same, whatever its length);
    'token_mean' divides the sum over all tokens by their number (every token weighs the
    same).

    Args:
      logp_BT: [B, T] log-probs of the sampled tokens under the policy being trained.
      old_logp_BT: [B, T] log-probs under the policy that sampled them.
      ref_logp_BT: [B, T] log-probs under the reference policy; may be None when beta is 0.
      advantages_B: [B] advantage of each sequence (see group_advantages).
      mask_BT: [B, T] 1 on completion tokens, 0 on prompt and padding.
      clip_eps: lower clip width (ratio >= 1 - clip_eps).
      clip_eps_high: upper clip width (ratio <= 1 + clip_eps_high); None uses clip_eps.
      beta: weight of the KL penalty.
      kl_estimator: 'k1' or 'k3'.
      aggregation: 'sequence_mean_token_mean' or 'token_mean'.

    Returns:
      (loss, aux): the scalar loss and masked token means of `ratio`, `approx_kl` (the k3
      estimate of KL(old || policy), which exposes any mismatch between sampler and trainer
      log-probs on the first update), `clip_low_fraction` (A < 0 and ratio below 1 -
      clip_eps), `clip_high_fraction` (A > 0 and ratio above 1 + clip_eps_high),
      `clip_fraction` (their sum: tokens whose gradient the clip removed), `kl` (only when
      ref_logp_BT is given), plus `tokens`, the number of completion tokens.
    """
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got '{kl_estimator}'")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got '{aggregation}'")
    if ref_logp_BT is None and beta != 0:
        raise ValueError(f"beta={beta} needs reference log-probs (ref_logp_BT is None)")
    clip_high = clip_eps if clip_eps_high is None else clip_eps_high

    logp_BT = logp_BT.astype(jnp.float32)
    old_logp_BT = jax.lax.stop_gradient(old_logp_BT.astype(jnp.float32))
    advantages_B1 = jax.lax.stop_gradient(jnp.asarray(advantages_B, jnp.float32))[:, None]
    mask_BT = mask_BT.astype(jnp.float32)

    log_ratio_BT = logp_BT - old_logp_BT
    ratio_BT = jnp.exp(log_ratio_BT)
    clipped_ratio_BT = jnp.clip(ratio_BT, 1.0 - clip_eps, 1.0 + clip_high)
    surrogate_BT = jnp.minimum(ratio_BT * advantages_B1, clipped_ratio_BT * advantages_B1)
    loss_BT = -surrogate_BT

    aux = {}
    if ref_logp_BT is not None:
        ref_gap_BT = jax.lax.stop_gradient(ref_logp_BT.astype(jnp.float32)) - logp_BT
        kl_BT = -ref_gap_BT if kl_estimator == "k1" else jnp.exp(ref_gap_BT) - ref_gap_BT - 1.0
        loss_BT = loss_BT + beta * kl_BT
        aux["kl"] = kl_BT

    tokens_B = mask_BT.sum(axis=1)
    tokens = tokens_B.sum()
    if aggregation == "token_mean":
        loss = (loss_BT * mask_BT).sum() / jnp.maximum(tokens, 1.0)
    else:
        sequence_loss_B = (loss_BT * mask_BT).sum(axis=1) / jnp.maximum(tokens_B, 1.0)
        sequences = (tokens_B > 0).sum()
        loss = sequence_loss_B.sum() / jnp.maximum(sequences, 1)

    clip_low_BT = (advantages_B1 < 0) & (ratio_BT < 1.0 - clip_eps)
    clip_high_BT = (advantages_B1 > 0) & (ratio_BT > 1.0 + clip_high)
    aux.update(
        ratio=ratio_BT,
        approx_kl=ratio_BT - 1.0 - log_ratio_BT,
        clip_low_fraction=clip_low_BT,
        clip_high_fraction=clip_high_BT,
        clip_fraction=clip_low_BT | clip_high_BT,
    )

    def token_mean(values_BT: jax.Array) -> jax.Array:
        values_BT = jax.lax.stop_gradient(values_BT.astype(jnp.float32))
        return (values_BT * mask_BT).sum() / jnp.maximum(tokens, 1.0)

    aux = {name: token_mean(values_BT) for name, values_BT in aux.items()}
    aux["tokens"] = tokens
    return loss, aux
