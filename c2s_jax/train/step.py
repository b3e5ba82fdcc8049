"""The jitted train and eval steps: pure functions of (state, batch) with explicit shardings.

The step sums the objective over microbatches (gradient accumulation), then divides by the
number of answer tokens in the whole batch, so any microbatch count gives the gradient of
one big batch. Parameters, optimizer state and the batch keep the shardings the mesh rules
gave them; the old state's buffers are donated to the new one.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from c2s_jax import parallel
from c2s_jax.models.parts import ModelParts
from c2s_jax.train.loss import masked_loss
from c2s_jax.train.microbatch import accumulate
from c2s_jax.train.packing import BATCH_KEYS
from c2s_jax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """What the loss needs besides the batch."""

    num_tasks: int = 1
    z_loss_weight: float = 0.0
    microbatches: int = 1


def _objective(parts: ModelParts, params, frozen, batch, loss_cfg: LossConfig):
    model = parts.model(params, frozen)
    target_logit_BT, log_norm_BT = model.target_scores(
        batch["tokens"],
        batch["targets"],
        positions=batch["positions"],
        segment_ids=batch["segment_ids"],
    )
    return masked_loss(
        target_logit_BT,
        log_norm_BT,
        batch["loss_mask"],
        batch["task_id"],
        loss_cfg.num_tasks,
        loss_cfg.z_loss_weight,
    )


def make_train_step(
    parts: ModelParts,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    loss_cfg: LossConfig,
    state_shardings,
    batch_sharding: NamedSharding,
    rules: parallel.Rules,
):
    """Returns step(state, batch, frozen) -> (state, metrics), jitted and donating `state`.

    Activations are pinned by `rules` on the batch sharding's mesh (see
    :func:`c2s_jax.parallel.constrain`). `metrics` holds scalars `loss` (mean cross-entropy
    over answer tokens), `z_loss`, `grad_norm`, `learning_rate`, `tokens` (answer tokens),
    `batch_tokens` (non-padding tokens processed), and per-task `task_ce_sum`/`task_tokens`
    [K].
    """
    grad_fn = jax.value_and_grad(lambda p, f, b: _objective(parts, p, f, b, loss_cfg), has_aux=True)

    def gradients(batch: dict, params, frozen) -> tuple[tuple, None]:
        (_, aux), grads = grad_fn(params, frozen, batch)
        return (grads, aux), None

    def step(state: TrainState, batch: dict, frozen) -> tuple[TrainState, dict]:
        with parallel.activation_sharding(batch_sharding.mesh, rules):
            (grads, aux), _ = accumulate(
                functools.partial(gradients, params=state.params, frozen=frozen),
                batch,
                loss_cfg.microbatches,
            )
        tokens = jnp.maximum(aux["tokens"], 1.0)
        # Back to each gradient's own dtype: a float32 count would promote bfloat16
        # gradients, and through them the optimizer's moments (state that changes dtype
        # after the first step compiles the step again and no longer matches checkpoints).
        grads = jax.tree.map(lambda g: (g / tokens).astype(g.dtype), grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": aux["ce_sum"] / tokens,
            "z_loss": aux["z_sum"] / tokens,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state.step),
            "tokens": aux["tokens"],
            "batch_tokens": jnp.sum(batch["segment_ids"] > 0),
            "task_ce_sum": aux["task_ce_sum"],
            "task_tokens": aux["task_tokens"],
        }
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
    return jax.jit(
        step,
        in_shardings=(state_shardings, {k: batch_sharding for k in BATCH_KEYS}, None),
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
    )


def make_eval_step(
    parts: ModelParts, loss_cfg: LossConfig, batch_sharding: NamedSharding, rules: parallel.Rules
):
    """Returns eval(params, batch, frozen) -> loss sums (`ce_sum`, `tokens`, per-task)."""

    def evaluate(params, batch, frozen):
        with parallel.activation_sharding(batch_sharding.mesh, rules):
            _, aux = _objective(parts, params, frozen, batch, loss_cfg)
        return aux

    replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
    return jax.jit(
        evaluate,
        in_shardings=(None, {k: batch_sharding for k in BATCH_KEYS}, None),
        out_shardings=replicated,
    )
