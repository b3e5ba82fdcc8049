"""The jitted side of GRPO: the batch of sampled completions, their log-probabilities under
a model, and one clipped policy-gradient update.

A row holds one prompt and one of its completions, shifted by one token into `tokens`
(inputs) and `targets`, right-padded to a fixed length L so that every step reuses one
compiled program. `completion_mask` is 1 where the target is a completion token (EOS
included when sampled): the positions whose log-probabilities the objective uses.

Shape letters: B rows (P prompts x G completions), L row length, N sampled tokens per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from c2s_jax import parallel
from c2s_jax.models.parts import ModelParts
from c2s_jax.rl.objective import AGGREGATIONS, KL_ESTIMATORS, grpo_loss
from c2s_jax.train.microbatch import accumulate
from c2s_jax.train.state import TrainState

ROW_KEYS = ("tokens", "targets", "positions", "segment_ids", "completion_mask")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """The GRPO objective's settings (see :func:`c2s_jax.rl.objective.grpo_loss`).

    Attributes:
      clip_eps: lower clip width of the importance ratio.
      clip_eps_high: upper clip width; None uses clip_eps.
      beta: weight of the KL penalty to the reference policy (0: no reference at all).
      kl_estimator: 'k1' or 'k3'.
      aggregation: 'sequence_mean_token_mean' or 'token_mean'.
      microbatches: the batch's rows are split into this many parts whose gradients are
        accumulated (same update, less activation memory).
    """

    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    beta: float = 0.0
    kl_estimator: str = "k3"
    aggregation: str = "sequence_mean_token_mean"
    microbatches: int = 1

    def __post_init__(self):
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")
        if self.microbatches < 1:
            raise ValueError(f"microbatches must be >= 1, got {self.microbatches}")


def rollout_batch(
    prompts: Sequence[np.ndarray], completions_BN: np.ndarray, lengths_B: np.ndarray, L: int
) -> dict[str, np.ndarray]:
    """The rows of prompt + completion (see the module docstring).

    Args:
      prompts: [B] prompt token arrays (one per row: repeat each prompt G times).
      completions_BN: [B, N] int32 sampled tokens.
      lengths_B: [B] how many of each row's sampled tokens count.
      L: row length; at least the longest prompt + completion minus one.

    Returns:
      {'tokens', 'targets', 'positions', 'segment_ids' (1 on real tokens, 0 on padding):
      [B, L] int32; 'completion_mask': [B, L] float32}.
    """
    B = len(prompts)
    rows = {k: np.zeros((B, L), np.int32) for k in ROW_KEYS[:-1]}
    mask_BL = np.zeros((B, L), np.float32)
    for b, prompt in enumerate(prompts):
        sequence = np.concatenate([prompt, completions_BN[b, : lengths_B[b]]])
        m = len(sequence) - 1
        if m > L:
            raise ValueError(f"row {b} needs {m} positions but rows hold {L}")
        rows["tokens"][b, :m] = sequence[:-1]
        rows["targets"][b, :m] = sequence[1:]
        rows["positions"][b, :m] = np.arange(m)
        rows["segment_ids"][b, :m] = 1
        mask_BL[b, len(prompt) - 1 : m] = 1.0
    return {**rows, "completion_mask": mask_BL}


def completion_values(batch: dict[str, np.ndarray], values_BN: np.ndarray) -> np.ndarray:
    """[B, L] float32: per-token values of the sampled tokens (e.g. the sampler's
    log-probs) placed at their completion positions, 0 elsewhere."""
    mask_BL = batch["completion_mask"] > 0
    out_BL = np.zeros(mask_BL.shape, np.float32)
    for b in range(mask_BL.shape[0]):
        columns = np.flatnonzero(mask_BL[b])
        out_BL[b, columns] = values_BN[b, : columns.size]
    return out_BL


def sequence_logprobs(model, batch: dict) -> jax.Array:
    """[B, L] float32 log-probabilities of the targets under `model`, 0 off completions."""
    target_BL, log_norm_BL = model.target_scores(
        batch["tokens"],
        batch["targets"],
        positions=batch["positions"],
        segment_ids=batch["segment_ids"],
    )
    return (target_BL - log_norm_BL) * batch["completion_mask"]


def batch_shardings(mesh: Mesh, rules: parallel.Rules) -> dict[str, NamedSharding]:
    """Shardings of a rollout batch: rows over the batch axes; `advantages` [B] likewise."""
    rows = parallel.batch_sharding(mesh, rules)
    per_row = NamedSharding(mesh, parallel.logical_to_spec(("batch",), rules))
    return {**{k: rows for k in ROW_KEYS}, "advantages": per_row}


def make_logprob_fn(graphdef, shardings: dict[str, NamedSharding], rules: parallel.Rules):
    """Returns logprobs(params, batch) -> [B, L]: the targets' log-probabilities under the
    model `graphdef` with full parameters `params` (the frozen reference policy)."""

    def logprobs(params, batch):
        with parallel.activation_sharding(shardings["tokens"].mesh, rules):
            return sequence_logprobs(nnx.merge(graphdef, params), batch)

    return jax.jit(logprobs, in_shardings=(None, shardings), out_shardings=shardings["tokens"])


def make_update_step(
    parts: ModelParts,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    objective: ObjectiveConfig,
    state_shardings,
    shardings: dict[str, NamedSharding],
    rules: parallel.Rules,
):
    """Returns step(state, batch, frozen, old_logp, ref_logp) -> (state, metrics, logp).

    One optimizer update on the GRPO loss of the whole batch (the microbatches' gradients
    summed with weights that make them equal the full batch's). `old_logp` [B, L] are the
    log-probs of the policy that sampled; None on the first update of a batch, which then
    uses its own log-probs (stopped), so that the ratio is exactly 1 there. `ref_logp`
    [B, L] are the reference policy's, None when beta is 0. The returned `logp` [B, L] are
    the policy's log-probs before this update (the next updates' `old_logp`). `metrics`
    holds `loss`, `grad_norm`, `learning_rate` and grpo_loss's token means (`ratio`,
    `approx_kl`, `clip_*fraction`, `kl` with a reference) and `tokens`. `state` is donated.
    """

    def loss_fn(params, frozen, batch, old_logp_BL, ref_logp_BL):
        logp_BL = sequence_logprobs(parts.model(params, frozen), batch)
        if old_logp_BL is None:
            old_logp_BL = jax.lax.stop_gradient(logp_BL)
        loss, aux = grpo_loss(
            logp_BL,
            old_logp_BL,
            ref_logp_BL,
            batch["advantages"],
            batch["completion_mask"],
            clip_eps=objective.clip_eps,
            clip_eps_high=objective.clip_eps_high,
            beta=objective.beta,
            kl_estimator=objective.kl_estimator,
            aggregation=objective.aggregation,
        )
        return loss, (aux, logp_BL)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: dict, frozen, old_logp_BL, ref_logp_BL):
        tokens_B = batch["completion_mask"].sum(axis=1)
        # What grpo_loss divides by: sequences with tokens, or tokens.
        units_B = tokens_B if objective.aggregation == "token_mean" else (tokens_B > 0) * 1.0

        def weighted(part):
            rows, old, ref, units, tokens = part
            (loss, (aux, logp)), grads = grad_fn(state.params, frozen, rows, old, ref)
            # A microbatch's loss is a mean over its own units; weighting it by its share
            # of all units makes the sum the whole batch's mean (aux: by its token share).
            weight = units.sum() / jnp.maximum(units_B.sum(), 1.0)
            token_weight = tokens.sum() / jnp.maximum(tokens_B.sum(), 1.0)
            aux = {k: v if k == "tokens" else v * token_weight for k, v in aux.items()}
            return (loss * weight, aux, jax.tree.map(lambda g: g * weight, grads)), logp

        whole = (batch, old_logp_BL, ref_logp_BL, units_B, tokens_B)
        with parallel.activation_sharding(shardings["tokens"].mesh, rules):
            (loss, aux, grads), logp_BL = accumulate(weighted, whole, objective.microbatches)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state.step),
            **aux,
        }
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics, logp_BL

    replicated = NamedSharding(shardings["tokens"].mesh, PartitionSpec())
    return jax.jit(
        step,
        in_shardings=(state_shardings, shardings, None, None, None),
        out_shardings=(state_shardings, replicated, shardings["tokens"]),
        donate_argnums=0,
    )
