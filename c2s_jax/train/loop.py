"""The training loop: mesh, state, input, resume, steps, evaluation, checkpoints.

Rerunning the same command with the same workdir continues from the newest checkpoint
that reads (state and input position), so an interrupted or preempted run loses nothing;
rerunning a finished one returns its stored result. SIGTERM, which Cloud TPU sends before
preemption, saves at the current step and returns cleanly. The workdir is a local path or
a ``gs://`` URL that every host of a pod shares; one run at a time holds it.
"""

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from etils import epath
from tqdm.auto import tqdm

from c2s_jax import parallel
from c2s_jax.atomic_write import storage_path
from c2s_jax.errors import NonFiniteLossError
from c2s_jax.model_bundle import export_bundle
from c2s_jax.run import fault_points
from c2s_jax.run.checkpoints import Checkpoints
from c2s_jax.run.finish import export_final, finished_result, write_result
from c2s_jax.run.preemption import Preemption
from c2s_jax.run.workdir_lock import workdir_lock
from c2s_jax.train.data import batch_sources, to_global
from c2s_jax.train.flops import peak_flops, train_flops_per_token
from c2s_jax.train.metrics import MetricWriter
from c2s_jax.train.optimizer import optimizer_for
from c2s_jax.train.settings_check import check_train_settings
from c2s_jax.train.state import create_train_state
from c2s_jax.train.step import LossConfig, make_eval_step, make_train_step

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What a run ended with (also written to `workdir/result.json`)."""

    workdir: str
    step: int
    train_loss: float
    eval_loss: float | None
    eval_task_loss: dict[str, float]
    preempted: bool
    n_params: int


def train(
    cfg: ml_collections.ConfigDict, workdir: str | os.PathLike, strict_restore: bool = False
) -> TrainResult:
    """Trains (or resumes) the experiment `cfg` in `workdir` (a local path or a URL).

    A workdir that already holds a finished run of `cfg.train.steps` steps (its final
    checkpoint, export and `result.json`) is left as it is and its stored result returned.

    Args:
      cfg: the experiment config.
      workdir: the run's folder.
      strict_restore: stop when the newest checkpoint cannot be read, instead of resuming
        from the next older one.

    Raises:
      WorkdirBusyError: another run holds `workdir`.
      RestoreError: no checkpoint can be restored (see `strict_restore`).
      NonFiniteLossError: the loss became NaN or infinite.
    """
    # Settings are checked before the workdir is touched: a bad value leaves nothing behind.
    mesh = parallel.make_mesh(dict(cfg.mesh), cfg.dcn_data)
    rules = tuple(tuple(r) for r in cfg.rules)
    check_train_settings(cfg, parallel.batch_shards(mesh, rules))
    workdir_path = storage_path(workdir)
    with workdir_lock(workdir_path, "c2s train"):
        return _train_locked(cfg, workdir_path, mesh, rules, strict_restore)


def _train_locked(cfg, workdir_path: epath.Path, mesh, rules, strict_restore) -> TrainResult:
    batch_sharding = parallel.batch_sharding(mesh, rules)
    is_chief = jax.process_index() == 0
    finished = finished_result(workdir_path, cfg.train.steps)
    if finished is not None:
        return TrainResult(**{**finished, "workdir": str(workdir_path)})

    # ---------------------------------------------------------------- model and optimizer
    tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps)
    state, parts, shardings = create_train_state(cfg, tx, mesh)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    if parts.frozen is not None:
        n_params += sum(x.size for x in jax.tree.leaves(parts.frozen))

    # ---------------------------------------------------------------- input
    train_source, eval_source, task_names = batch_sources(
        cfg, parts.config.vocab_size, batch_sharding
    )
    loss_cfg = LossConfig(len(task_names), cfg.train.z_loss_weight, cfg.train.microbatches)
    train_step = make_train_step(parts, tx, schedule, loss_cfg, shardings, batch_sharding, rules)
    eval_step = make_eval_step(parts, loss_cfg, batch_sharding, rules)

    # ---------------------------------------------------------------- resume
    checkpoints = Checkpoints(workdir_path / "checkpoints", cfg.train.keep_checkpoints)
    try:
        restored = checkpoints.restore_newest(state, strict_restore)
    except BaseException:
        checkpoints.close()
        raise
    train_loss = float("nan")
    if restored is not None:
        state = restored.state
        train_source.set_state(restored.data)
        train_loss = restored.summary.get("train_loss", train_loss)
        log.info("resumed from step %d in %s", restored.step, checkpoints.directory)
    step = int(jax.device_get(state.step))

    # ---------------------------------------------------------------- loop
    writer = MetricWriter(workdir_path, enabled=is_chief)
    flops_per_token = train_flops_per_token(parts.config, cfg.data.seq_len)
    peak = peak_flops(jax.devices()[0].device_kind, cfg.train.peak_flops_per_device)
    preemption = Preemption()
    bar = tqdm(total=cfg.train.steps, initial=step, unit="step", disable=not is_chief)
    pending_losses: list[tuple[int, jax.Array]] = []
    last_good = restored.step if restored is not None else None
    interval_start, interval_tokens, interval_first_step = time.perf_counter(), 0, step
    eval_loss, eval_task_loss = None, {}

    def evaluate(params, at_step: int) -> tuple[float, dict[str, float]]:
        loss, per_task = _evaluate(
            eval_step,
            params,
            parts.frozen,
            eval_source(),
            cfg.data.eval_batches,
            batch_sharding,
            task_names,
        )
        writer.write(
            at_step, {"loss": loss, **{f"loss/{k}": v for k, v in per_task.items()}}, "eval"
        )
        return loss, per_task

    try:
        while step < cfg.train.steps:
            batch = to_global(next(train_source), batch_sharding)
            state, metrics = train_step(state, batch, parts.frozen)
            interval_tokens = interval_tokens + metrics["batch_tokens"]  # stays on device
            step += 1
            pending_losses.append((step, metrics["loss"]))
            bar.update(1)
            at_log = step % cfg.train.log_every == 0 or step == cfg.train.steps
            at_save = step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps
            if at_log or at_save or preemption.requested:
                _check_finite(pending_losses, last_good, checkpoints.directory)
                pending_losses.clear()
                train_loss = float(jax.device_get(metrics["loss"]))
            if at_log:
                seconds = time.perf_counter() - interval_start
                scalars = _train_scalars(
                    metrics,
                    int(jax.device_get(interval_tokens)),
                    seconds,
                    flops_per_token,
                    peak,
                    step - interval_first_step,
                )
                writer.write(step, scalars)
                bar.set_postfix(
                    loss=f"{scalars['loss']:.4f}", tok_s=f"{scalars['tokens_per_s']:.0f}"
                )
                interval_start, interval_tokens = time.perf_counter(), 0
                interval_first_step = step
            if cfg.train.eval_every and (
                step % cfg.train.eval_every == 0 or step == cfg.train.steps
            ):
                eval_loss, eval_task_loss = evaluate(state.params, step)
            if at_save or preemption.requested:
                checkpoints.save(step, state, train_source.get_state(), {"train_loss": train_loss})
                last_good = step
                fault_points.reached("checkpoint", step)
            if preemption.requested:
                log.warning("SIGTERM: saved step %d, stopping", step)
                break
        if step == cfg.train.steps and cfg.train.eval_every and eval_loss is None:
            # Resumed from the final checkpoint of a run that stopped before its result
            # was written: evaluate it, so the result is complete.
            eval_loss, eval_task_loss = evaluate(state.params, step)
    finally:
        bar.close()
        preemption.restore()
        checkpoints.close()
        writer.close()

    # ---------------------------------------------------------------- finish
    if step == cfg.train.steps and not preemption.requested:
        model = parts.model(state.params, parts.frozen)
        export_final(workdir_path, step, lambda out: _write_bundle(cfg, model, out), "model")
    result = TrainResult(
        workdir=str(workdir_path),
        step=step,
        train_loss=train_loss,
        eval_loss=eval_loss,
        eval_task_loss=eval_task_loss,
        preempted=preemption.requested,
        n_params=int(n_params),
    )
    write_result(workdir_path, dataclasses.asdict(result))
    return result


def _write_bundle(cfg: ml_collections.ConfigDict, model, out: Path) -> None:
    """Writes `model` (adapters merged) as a bundle that `c2s generate`, `c2s eval` and
    `c2s grpo` load, with the corpus's tokenizer and facts."""
    tokenizer_path, family, corpus = None, "c2s", {}
    if cfg.data.source == "corpus":
        from c2s_jax.data.records import read_metadata  # tensorflow-datasets: only this path

        corpus = read_metadata(cfg.data.corpus_dir)
        corpus["corpus_dir"] = str(storage_path(cfg.data.corpus_dir))
        tokenizer_path = Path(cfg.data.corpus_dir) / corpus["tokenizer"]["path"]
        family = corpus["tokenizer"]["family"]
    # The config as JSON values (tuples become lists), for the bundle and its model card.
    training = json.loads(cfg.to_json_best_effort())
    export_bundle(model, out, tokenizer_path, family, corpus, cfg.data.seq_len, training)


def _check_finite(
    pending: list[tuple[int, jax.Array]], last_good: int | None, where: epath.Path
) -> None:
    for step, loss in pending:
        if not np.isfinite(float(jax.device_get(loss))):
            good = f"step {last_good} in {where}" if last_good is not None else "none yet"
            raise NonFiniteLossError(
                f"the loss is not finite at step {step}; last good checkpoint: {good}. Lower "
                "config.optimizer.learning_rate or raise config.optimizer.warmup_steps"
            )


def _train_scalars(metrics, tokens, seconds, flops_per_token, peak, steps) -> dict[str, float]:
    host = jax.device_get({k: metrics[k] for k in ("loss", "z_loss", "grad_norm", "learning_rate")})
    tokens_per_s = tokens / max(seconds, 1e-9)
    scalars = {k: float(v) for k, v in host.items()}
    scalars.update(tokens_per_s=tokens_per_s, step_time_s=seconds / steps)
    if peak:
        scalars["mfu"] = flops_per_token * tokens_per_s / (peak * jax.device_count())
    return scalars


def _evaluate(eval_step, params, frozen, source, n_batches, sharding, task_names):
    totals = None
    for _ in range(n_batches):
        aux = eval_step(params, to_global(next(source), sharding), frozen)
        totals = aux if totals is None else jax.tree.map(np.add, totals, aux)
    totals = jax.device_get(totals)
    loss = float(totals["ce_sum"] / max(totals["tokens"], 1.0))
    per_task = {
        name: float(totals["task_ce_sum"][i] / totals["task_tokens"][i])
        for i, name in enumerate(task_names)
        if totals["task_tokens"][i] > 0
    }
    return loss, per_task
