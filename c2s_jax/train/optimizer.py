"""AdamW with warmup and decay, a weight-decay mask, and global-norm clipping."""

import jax
import ml_collections
import optax

from c2s_jax.errors import InputError


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup to `cfg.learning_rate`, then cosine or linear decay to `end_factor`.

    Reads `cfg.learning_rate`, `cfg.warmup_steps`, `cfg.decay` ('cosine' | 'linear' |
    'constant'), `cfg.end_factor` and `cfg.total_steps` (the trainer's step count).
    """
    peak, warmup, total = cfg.learning_rate, cfg.warmup_steps, cfg.total_steps
    end = peak * cfg.end_factor
    if cfg.decay == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1), end)
    if cfg.decay == "linear":
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, peak, warmup),
                optax.linear_schedule(peak, end, max(total - warmup, 1)),
            ],
            [warmup],
        )
    if cfg.decay == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup]
        )
    raise InputError(
        f"config.optimizer.decay must be cosine, linear or constant, not {cfg.decay!r}"
    )


def decay_mask(params, decay_embeddings: bool):
    """True for parameters that get weight decay.

    Projection weights (named w*) decay; norm scales and biases never do (they are
    vectors per layer, so rank alone cannot tell them apart once layers are stacked);
    the embedding and unembedding decay only when asked.
    """

    def decays(path, leaf) -> bool:
        names = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
        names = [n for n in names if n not in ("value", ".value")]
        if names[-1] in ("embed", "unembed"):
            return decay_embeddings
        return names[-1].startswith("w")

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The optimizer of `config.optimizer`: clip -> AdamW(masked decay) with the schedule."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm else optax.identity(),
        optax.adamw(
            learning_rate_schedule(cfg),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=lambda params: decay_mask(params, cfg.decay_embeddings),
        ),
    )


def optimizer_for(
    optimizer: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, learning-rate schedule) of an experiment's `config.optimizer` for a run
    of `total_steps` optimizer updates."""
    cfg = ml_collections.ConfigDict(optimizer.to_dict())
    cfg.total_steps = total_steps
    return make_optimizer(cfg), learning_rate_schedule(cfg)
