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
which readers ignore and the next run removes before it appends.
"""

import json
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
from flax import nnx

from c2s_jax.errors import InputError
from c2s_jax.models.registry import ModelConfig, abstract_model, count_params
from c2s_jax.train.flops import train_flops_per_token
from c2s_jax.train.state import model_config

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
    model_cfg = model_config(cfg)
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
    """The complete records of a results file ([] if it does not exist).

    A last line without its newline is a write cut short and is ignored.

    Raises:
      InputError: a complete line that is not JSON (the file was edited or corrupted).
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] is '' or partial
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise InputError(
                f"{path}:{number}: not a JSON record ({err.msg}); remove the line to rerun "
                "that member"
            ) from None
    return records


def drop_partial_line(path: str | os.PathLike) -> None:
    """Truncates a trailing partial line left by an interrupted append."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def recorded_names(path: str | os.PathLike, repair: bool) -> set[str]:
    """Names of the members recorded in `path`; with `repair`, first drops a partial line."""
    if repair:
        drop_partial_line(path)
    return {record["name"] for record in read_results(path)}


def append_result(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Appends `record` as one line, flushed and fsync'ed before returning."""
    line = json.dumps(record, sort_keys=True) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
