"""DIR/results.jsonl: one JSON line per finished sweep member, the input of scaling fits.

Each record holds
    name            the member's name (see spec.py)
    axes            {axis name: label}
    n_params        non-embedding parameters (no token embedding, no output embedding)
    n_params_total  all parameters
    tokens          training tokens seen: steps * global batch size * sequence length
    steps           optimizer steps
    flops           training FLOPs: tokens * forward+backward FLOPs per token (flops.py,
                    attention included)
    loss            final evaluation loss (mean cross-entropy per answer token, nats)
    task_loss       {task: final evaluation loss}
    train_loss      the last training step's loss
    workdir         the member's checkpoints and metrics
    config          the member's full training config

Lines are appended whole and fsync'ed, so a crash leaves at most one partial last line,
which readers ignore and the next run removes before it appends (c2s_jax/storage/json_lines.py,
the rule `c2s scaling fit` reads by too).
"""

import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
from flax import nnx

from c2s_jax.models.registry import ModelConfig, abstract_model, count_params
from c2s_jax.storage.json_lines import drop_cut_short_line, read_json_lines
from c2s_jax.train.flops import train_flops_per_token
from c2s_jax.train.state import ModelSpec

RESULTS_NAME = "results.jsonl"


def non_embedding_params(cfg: ModelConfig) -> int:
    """Parameters of `cfg` outside the token embedding and unembedding, from shapes alone.

    Embeddings are the parameters with a 'vocab' logical axis, which covers tied (Gemma-2)
    and untied (Pythia) output embeddings alike.
    """
    state = nnx.state(abstract_model(cfg), nnx.Param)
    specs = nnx.get_partition_spec(state)
    leaves = jax.tree.leaves(state)
    axes = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    return sum(leaf.size for leaf, names in zip(leaves, axes, strict=True) if "vocab" not in names)


def member_record(
    name: str,
    labels: dict[str, str],
    cfg: ml_collections.ConfigDict,
    result: dict[str, Any],
    workdir: str,
) -> dict[str, Any]:
    """The results.jsonl record of a finished member.

    Args:
      cfg: the member's training config.
      result: the trainer's workdir/result.json (step, eval_loss, eval_task_loss, train_loss).
    """
    model_cfg = ModelSpec.from_config(cfg).model_config()
    tokens = int(result["step"]) * cfg.data.batch_size * cfg.data.seq_len
    return {
        "name": name,
        "axes": dict(labels),
        "n_params": non_embedding_params(model_cfg),
        "n_params_total": count_params(model_cfg),
        "tokens": tokens,
        "steps": int(result["step"]),
        "flops": train_flops_per_token(model_cfg, cfg.data.seq_len) * tokens,
        "loss": result["eval_loss"],
        "task_loss": dict(result["eval_task_loss"]),
        "train_loss": result["train_loss"],
        "workdir": workdir,
        "config": cfg.to_dict(),
    }


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a results file ([] if it does not exist), by the rule of
    :mod:`c2s_jax.storage.json_lines` (a cut-short last line is ignored).

    Raises:
      InputError: a complete line that is not JSON (the file was edited or corrupted).
    """
    if not Path(path).exists():
        return []
    return [record for _, record in read_json_lines(path).records]


def recorded_names(path: str | os.PathLike, repair: bool) -> set[str]:
    """Names of the members recorded in `path`; with `repair`, first drops a partial line."""
    if repair:
        drop_cut_short_line(path)
    return {record["name"] for record in read_results(path)}
