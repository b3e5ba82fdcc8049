"""An experiment's training settings checked before anything is compiled or written: each
bad value is one line naming its config key and what to give instead."""

from numbers import Integral

import ml_collections

from c2s_jax.errors import InputError

# Keys that count something and must be at least 1, and those where 0 switches a feature off.
AT_LEAST_ONE = (
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.microbatches",
    "data.batch_size",
    "data.seq_len",
)
ZERO_TURNS_OFF = ("train.eval_every",)


def check_train_settings(cfg: ml_collections.ConfigDict, batch_shards: int) -> None:
    """Raises InputError naming the first setting of `cfg` that cannot train.

    Args:
      cfg: the experiment config.
      batch_shards: how many pieces the run's mesh cuts the batch into
        (`parallel.batch_shards`); every microbatch must divide evenly into them.
    """
    for key in (*AT_LEAST_ONE, *ZERO_TURNS_OFF):
        value = _value(cfg, key)
        least = 1 if key in AT_LEAST_ONE else 0
        if not _whole(value, least):
            raise InputError(
                f"config.{key}={value!r}: must be a whole number >= {least}"
                + (" (0 turns it off)" if least == 0 else "")
            )
    if cfg.train.eval_every and not _whole(cfg.data.eval_batches, 1):
        raise InputError(
            f"config.data.eval_batches={cfg.data.eval_batches!r}: must be a whole number >= 1 "
            "while config.train.eval_every turns evaluation on"
        )
    batch, microbatches = cfg.data.batch_size, cfg.train.microbatches
    if batch % microbatches:
        raise InputError(
            f"config.data.batch_size={batch} does not split into config.train.microbatches="
            f"{microbatches} equal microbatches: use a multiple of {microbatches}"
        )
    if (batch // microbatches) % batch_shards:
        raise InputError(
            f"config.data.batch_size={batch}: each of its {microbatches} microbatch(es) of "
            f"{batch // microbatches} rows must divide over the {batch_shards} devices that "
            f"share the batch (config.mesh); use a multiple of {microbatches * batch_shards}"
        )


def _whole(value, least: int) -> bool:
    """Whether `value` is an integer (not a bool) of at least `least`."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= least


def _value(cfg: ml_collections.ConfigDict, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node
