"""`c2s train`: the training job that :mod:`c2s_jax.run.runner` drives.

Rerunning the same command with the same workdir continues from the newest checkpoint
that reads (state and input position), so an interrupted or preempted run loses nothing;
rerunning a finished one returns its stored result. SIGTERM, which Cloud TPU sends before
preemption, saves at the current step and returns cleanly. The workdir is a local path or
a ``gs://`` URL that every host of a pod shares; one run at a time holds it.
"""

import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from etils import epath

from c2s_jax import parallel
from c2s_jax.checkpoints.bundle import export_bundle
from c2s_jax.errors import NonFiniteLossError
from c2s_jax.run.checkpoints import Restored
from c2s_jax.run.runner import Outcome, Schedule, run
from c2s_jax.storage.atomic import storage_path
from c2s_jax.train.data import DataSpec, batch_sources, to_global
from c2s_jax.train.flops import peak_flops, train_flops_per_token
from c2s_jax.train.optimizer import optimizer_for
from c2s_jax.train.settings_check import check_train_settings
from c2s_jax.train.state import ModelSpec, create_train_state
from c2s_jax.train.step import LossConfig, make_eval_step, make_train_step


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
      InputError: a setting the step cannot run with (before the workdir is touched).
      Besides, what `c2s_jax.run.runner.run` raises: a busy workdir, no readable
      checkpoint, a non-finite loss.
    """
    # Settings are checked before the workdir is touched: a bad value leaves nothing behind.
    mesh, rules = parallel.config_mesh(cfg)
    check_train_settings(cfg, parallel.batch_shards(mesh, rules))
    t = cfg.train
    schedule = Schedule(
        steps=t.steps,
        checkpoint_every=t.checkpoint_every,
        keep_checkpoints=t.keep_checkpoints,
        log_every=t.log_every,
        eval_every=t.eval_every,
    )
    result = run(
        workdir,
        "c2s train",
        schedule,
        lambda workdir_path: TrainingJob(cfg, mesh, rules, workdir_path),
        TrainingJob.result,
        "model",
        strict_restore,
    )
    return TrainResult(**result)


class TrainingJob:
    """One experiment's model, optimizer and input, one step at a time (see
    :class:`c2s_jax.run.runner.Job`).

    Steps are dispatched without waiting for the device: losses are fetched, and checked
    to be finite, only when scalars are logged or a checkpoint is saved.
    """

    progress_keys = ("loss", "tokens_per_s")

    def __init__(
        self,
        cfg: ml_collections.ConfigDict,
        mesh: jax.sharding.Mesh,
        rules: parallel.Rules,
        workdir: epath.Path,
    ):
        self._cfg = cfg
        self._workdir = workdir
        self._batch_sharding = parallel.batch_sharding(mesh, rules)
        tx, schedule = optimizer_for(cfg.optimizer, cfg.train.steps)
        self.state, self._parts, shardings = create_train_state(
            ModelSpec.from_config(cfg), tx, mesh
        )
        n_params = sum(x.size for x in jax.tree.leaves(self.state.params))
        if self._parts.frozen is not None:
            n_params += sum(x.size for x in jax.tree.leaves(self._parts.frozen))
        self.n_params = int(n_params)

        self._train_source, self._eval_source, self._task_names = batch_sources(
            DataSpec.from_config(cfg), self._parts.config.vocab_size, self._batch_sharding
        )
        loss_cfg = LossConfig(
            len(self._task_names), cfg.train.z_loss_weight, cfg.train.microbatches
        )
        self._train_step = make_train_step(
            self._parts, tx, schedule, loss_cfg, shardings, self._batch_sharding, rules
        )
        self._eval_step = make_eval_step(self._parts, loss_cfg, self._batch_sharding, rules)

        self._flops_per_token = train_flops_per_token(self._parts.config, cfg.data.seq_len)
        self._peak = peak_flops(jax.devices()[0].device_kind, cfg.train.peak_flops_per_device)
        self.train_loss = float("nan")
        self.last_good: int | None = None  # the newest step saved with a finite loss
        self._pending_losses: list[tuple[int, jax.Array]] = []
        self._metrics: dict[str, jax.Array] = {}
        self._step = 0
        self._interval_start, self._interval_tokens, self._interval_first_step = (
            time.perf_counter(),
            0,
            0,
        )

    def resume(self, restored: Restored) -> None:
        """Continues from a checkpoint's state, input position and train loss."""
        self.state = restored.state
        self._train_source.set_state(restored.data)
        self.train_loss = restored.summary.get("train_loss", self.train_loss)
        self.last_good = self._step = self._interval_first_step = restored.step

    def step(self) -> None:
        """Dispatches one training step on the next batch."""
        batch = to_global(next(self._train_source), self._batch_sharding)
        self.state, self._metrics = self._train_step(self.state, batch, self._parts.frozen)
        self._interval_tokens = self._interval_tokens + self._metrics["batch_tokens"]  # on device
        self._step += 1
        self._pending_losses.append((self._step, self._metrics["loss"]))

    def scalars(self, step: int) -> dict[str, float]:
        """Loss, z-loss, gradient norm, learning rate, tokens/s, step time and MFU since the
        previous call."""
        self._sync_loss()
        seconds = time.perf_counter() - self._interval_start
        steps = step - self._interval_first_step
        host = jax.device_get(
            {k: self._metrics[k] for k in ("loss", "z_loss", "grad_norm", "learning_rate")}
        )
        tokens_per_s = int(jax.device_get(self._interval_tokens)) / max(seconds, 1e-9)
        scalars = {k: float(v) for k, v in host.items()}
        scalars.update(tokens_per_s=tokens_per_s, step_time_s=seconds / max(steps, 1))
        if self._peak:
            scalars["mfu"] = (
                self._flops_per_token * tokens_per_s / (self._peak * jax.device_count())
            )
        self._interval_start, self._interval_tokens = time.perf_counter(), 0
        self._interval_first_step = step
        return scalars

    def evaluate(self) -> dict[str, float]:
        """Held-out loss over `config.data.eval_batches` batches, overall and per task."""
        totals = None
        source = self._eval_source()
        for _ in range(self._cfg.data.eval_batches):
            batch = to_global(next(source), self._batch_sharding)
            aux = self._eval_step(self.state.params, batch, self._parts.frozen)
            totals = aux if totals is None else jax.tree.map(np.add, totals, aux)
        totals = jax.device_get(totals)
        scalars = {"loss": float(totals["ce_sum"] / max(totals["tokens"], 1.0))}
        for i, name in enumerate(self._task_names):
            if totals["task_tokens"][i] > 0:
                scalars[f"loss/{name}"] = float(totals["task_ce_sum"][i] / totals["task_tokens"][i])
        return scalars

    def checkpoint(self, step: int) -> tuple[dict, dict]:
        """The input position and the train loss, after checking every loss since the last
        check is finite."""
        self._sync_loss()
        self.last_good = step
        return self._train_source.get_state(), {"train_loss": self.train_loss}

    def export(self, out: Path) -> None:
        """Writes the model (adapters merged) as a bundle that `c2s generate`, `c2s eval`
        and `c2s grpo` load, with the corpus's tokenizer and facts."""
        cfg = self._cfg
        model = self._parts.model(self.state.params, self._parts.frozen)
        tokenizer_path, family, corpus = None, "c2s", {}
        if cfg.data.source == "corpus":
            from c2s_jax.corpus.records import read_metadata  # tensorflow-datasets: this path only

            corpus = read_metadata(cfg.data.corpus_dir)
            corpus["corpus_dir"] = str(storage_path(cfg.data.corpus_dir))
            tokenizer_path = Path(cfg.data.corpus_dir) / corpus["tokenizer"]["path"]
            family = corpus["tokenizer"]["family"]
        # The config as JSON values (tuples become lists), for the bundle and its model card.
        training = json.loads(cfg.to_json_best_effort())
        export_bundle(model, out, tokenizer_path, family, corpus, cfg.data.seq_len, training)

    def result(self, outcome: Outcome) -> dict:
        """The fields of :class:`TrainResult` but the workdir."""
        evaluation = outcome.eval
        return {
            "step": outcome.step,
            "train_loss": self.train_loss,
            "eval_loss": evaluation.get("loss"),
            "eval_task_loss": {
                k.removeprefix("loss/"): v for k, v in evaluation.items() if k.startswith("loss/")
            },
            "preempted": outcome.preempted,
            "n_params": self.n_params,
        }

    def _sync_loss(self) -> None:
        """Fetches the losses dispatched since the last sync; stops on one not finite."""
        for step, loss in self._pending_losses:
            if not np.isfinite(float(jax.device_get(loss))):
                good = (
                    f"step {self.last_good} in {self._workdir / 'checkpoints'}"
                    if self.last_good is not None
                    else "none yet"
                )
                raise NonFiniteLossError(
                    f"the loss is not finite at step {step}; last good checkpoint: {good}. "
                    "Lower config.optimizer.learning_rate or raise "
                    "config.optimizer.warmup_steps"
                )
        self._pending_losses.clear()
        if self._metrics:
            self.train_loss = float(jax.device_get(self._metrics["loss"]))
