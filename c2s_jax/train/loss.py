"""Masked next-token cross-entropy, with per-task sums and an optional z-loss."""

import jax
import jax.numpy as jnp


def masked_loss(
    target_logit_BT: jax.Array,
    log_norm_BT: jax.Array,
    loss_mask_BT: jax.Array,
    task_id_BT: jax.Array,
    num_tasks: int,
    z_loss_weight: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy over the masked (answer) tokens.

    Args:
      target_logit_BT: float32 logit of each next token [B, T].
      log_norm_BT: float32 logsumexp of each position's logits [B, T] (both from
        :func:`c2s_jax.models.output.target_scores`).
      loss_mask_BT: [B, T], 1 where the target is an answer token.
      task_id_BT: int [B, T] task of each token, in [0, num_tasks).
      num_tasks: number of tasks for the per-task sums.
      z_loss_weight: weight of mean(logsumexp(logits)^2) over masked tokens, which keeps
        the softmax normalizer near 1 (PaLM's z-loss); 0 disables it.

    Returns:
      (objective_sum, aux): the summed cross-entropy (+ weighted summed z-loss) over masked
      tokens, which the trainer divides by the batch's token count after summing over
      microbatches (so accumulation equals one big batch); aux holds `ce_sum`, `z_sum`,
      `tokens`, and per-task `task_ce_sum` [K] and `task_tokens` [K].
    """
    mask_BT = loss_mask_BT.astype(jnp.float32)
    ce_BT = (log_norm_BT - target_logit_BT) * mask_BT
    tokens = mask_BT.sum()
    per_task_BTK = jax.nn.one_hot(task_id_BT, num_tasks, dtype=jnp.float32) * mask_BT[..., None]
    z_sum = jnp.sum(jnp.square(log_norm_BT) * mask_BT)
    aux = {
        "ce_sum": ce_BT.sum(),
        "z_sum": z_sum,
        "tokens": tokens,
        "task_ce_sum": jnp.einsum("bt,btk->k", ce_BT, per_task_BTK),
        "task_tokens": per_task_BTK.sum(axis=(0, 1)),
    }
    return aux["ce_sum"] + z_loss_weight * z_sum, aux
