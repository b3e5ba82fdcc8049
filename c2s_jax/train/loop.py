"""The training loop: mesh, state, input, resume, steps, evaluation, checkpoints.

Rerunning the same command with the same workdir continues from the newest checkpoint
(state and input position), so an interrupted or preempted run loses nothing; rerunning a
finished one returns its stored result. SIGTERM, which Cloud TPU sends before preemption,
saves at the current step and returns cleanly. The workdir is a local path or a ``gs://``
URL that every host of a pod shares.
"""

import dataclasses
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from etils import epath
from tqdm.auto import tqdm

from c2s_jax import parallel
from c2s_jax.atomic_write import is_remote, storage_path, upload_directory, write_text_atomic
from c2s_jax.train.checkpoints import Checkpoints
from c2s_jax.train.data import batch_sources, to_global
from c2s_jax.train.flops import peak_flops, train_flops_per_token
from c2s_jax.train.metrics import MetricWriter
from c2s_jax.train.optimizer import optimizer_for
from c2s_jax.train.settings_check import check_train_settings
from c2s_jax.train.state import create_train_state
from c2s_jax.train.step import LossConfig, make_eval_step, make_train_step

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last checkpoint."""


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


class Preemption:
    """Turns SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def train(cfg: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainResult:
    """Trains (or resumes) the experiment `cfg` in `workdir` (a local path or a URL).

    A workdir that already holds a finished run of `cfg.train.steps` steps (its final
    checkpoint and `result.json`) is left as it is and its stored result returned.
    """
    # Settings are checked before the workdir is touched: a bad value leaves nothing behind.
    mesh = parallel.make_mesh(dict(cfg.mesh), cfg.dcn_data)
    rules = tuple(tuple(r) for r in cfg.rules)
    check_train_settings(cfg, parallel.batch_shards(mesh, rules))
    batch_sharding = parallel.batch_sharding(mesh, rules)
    workdir_path = storage_path(workdir)
    workdir_path.mkdir(parents=True, exist_ok=True)
    is_chief = jax.process_index() == 0

    # ---------------------------------------------------------------- finished already?
    checkpoints = Checkpoints(workdir_path / "checkpoints", cfg.train.keep_checkpoints)
    start = checkpoints.latest_step()
    finished = _finished_result(workdir_path, start, cfg.train.steps)
    if finished is not None:
        checkpoints.close()
        log.warning(
            "%s finished at step %d already; raise config.train.steps to train further",
            workdir_path,
            finished.step,
        )
        return finished

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
    if start is not None:
        state, data_state = checkpoints.restore(start, state)
        train_source.set_state(data_state)
        log.info("resumed from step %d in %s", start, checkpoints.directory)
    step = int(jax.device_get(state.step))

    # ---------------------------------------------------------------- loop
    writer = MetricWriter(workdir_path, enabled=is_chief)
    flops_per_token = train_flops_per_token(parts.config, cfg.data.seq_len)
    peak = peak_flops(jax.devices()[0].device_kind, cfg.train.peak_flops_per_device)
    preemption = Preemption()
    bar = tqdm(total=cfg.train.steps, initial=step, unit="step", disable=not is_chief)
    pending_losses: list[tuple[int, jax.Array]] = []
    last_good = start
    interval_start, interval_tokens, interval_first_step = time.perf_counter(), 0, step
    metrics = {}
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
                checkpoints.save(step, state, train_source.get_state())
                last_good = step
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

    if step == cfg.train.steps and not preemption.requested:
        _export(cfg, parts, state, workdir_path, step)

    result = TrainResult(
        workdir=str(workdir_path),
        step=step,
        train_loss=float(jax.device_get(metrics["loss"])) if metrics else float("nan"),
        eval_loss=eval_loss,
        eval_task_loss=eval_task_loss,
        preempted=preemption.requested,
        n_params=int(n_params),
    )
    if is_chief:
        write_text_atomic(
            workdir_path / RESULT_FILE, json.dumps(dataclasses.asdict(result), indent=1)
        )
    return result


def _finished_result(
    workdir: epath.Path, latest_step: int | None, steps: int
) -> TrainResult | None:
    """The stored result of a run in `workdir` that completed `steps` steps, or None."""
    stored = workdir / RESULT_FILE
    if latest_step != steps or not stored.exists():
        return None
    result = TrainResult(**json.loads(stored.read_text()))
    if result.step != steps or result.preempted:
        return None
    return dataclasses.replace(result, workdir=str(workdir))


def _export(cfg, parts, state, workdir: epath.Path, step: int) -> None:
    """Writes the finished model as a bundle (adapters merged) that `c2s generate`,
    `c2s eval` and `c2s grpo` load, and drops older exports."""
    if jax.process_count() > 1:
        # A bundle is written by one process from host memory; a multi-host run keeps its
        # orbax train checkpoint, which a single host can restore and export.
        log.info("multi-host run: no bundle export (the train checkpoint is kept)")
        return
    # The bundle writer imports the checkpoint converters: only the end of a run needs them.
    from c2s_jax.model_bundle import BUNDLE_FILE, EXPORTS_DIR, export_bundle

    exports = workdir / EXPORTS_DIR
    target = exports / f"step_{step:07d}"
    if (target / BUNDLE_FILE).exists():
        return
    tokenizer_path, family, corpus = None, "c2s", {}
    if cfg.data.source == "corpus":
        from c2s_jax.data.records import read_metadata  # tensorflow-datasets: only this path

        corpus = read_metadata(cfg.data.corpus_dir)
        corpus["corpus_dir"] = str(storage_path(cfg.data.corpus_dir))
        tokenizer_path = Path(cfg.data.corpus_dir) / corpus["tokenizer"]["path"]
        family = corpus["tokenizer"]["family"]
    model = parts.model(state.params, parts.frozen)
    if is_remote(workdir):
        # A bundle appears whole through a local rename, which object stores lack: build it
        # here and upload it with its manifest last, which is what readers look for.
        with tempfile.TemporaryDirectory(prefix="c2s-export-") as staging:
            local = Path(staging) / target.name
            export_bundle(model, local, tokenizer_path, family, corpus)
            upload_directory(local, target, BUNDLE_FILE)
    else:
        export_bundle(model, target, tokenizer_path, family, corpus)
    for older in exports.glob("step_*"):
        if older != target:
            older.rmtree(missing_ok=True)
    log.info("exported the model to %s", target)


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
