"""The one run loop that `c2s train` and `c2s grpo` share.

A run is a :class:`Job` (what one step does, what is checkpointed, how the model is
evaluated and exported) driven through its steps by :func:`run`, which owns everything
else: the workdir's lock, a finished run's stored result, resuming from the newest
readable checkpoint, metrics, the progress bar, evaluations and checkpoints on schedule,
SIGTERM (save at the current step, return cleanly), the export of the finished model and
the result written last. Training and GRPO differ only in their jobs.
"""

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jax
from etils import epath
from tqdm.auto import tqdm

from c2s_jax import fault_points
from c2s_jax.run.checkpoints import Checkpoints, Restored
from c2s_jax.run.finish import export_final, finished_result, write_result
from c2s_jax.run.metrics import MetricWriter
from c2s_jax.run.preemption import Preemption
from c2s_jax.run.workdir_lock import workdir_lock
from c2s_jax.storage.atomic import storage_path

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a run logs, evaluates and saves (every count in steps; 0 = never).

    Attributes:
      steps: the step the run ends at.
      checkpoint_every: steps between checkpoints; the final step is always saved.
      keep_checkpoints: how many recent checkpoints stay on disk.
      log_every: steps between training scalars; the final step always logs.
      eval_every: steps between evaluations.
      eval_at_start: evaluate the starting model before the first step of a fresh run.
      eval_at_end: evaluate the final step (always the case when `eval_every` is set).
    """

    steps: int
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int = 1
    eval_every: int = 0
    eval_at_start: bool = False
    eval_at_end: bool = False

    def evaluates_at(self, step: int) -> bool:
        """Whether the run evaluates after `step`."""
        if self.eval_every and step % self.eval_every == 0:
            return True
        return step == self.steps and (self.eval_at_end or bool(self.eval_every))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Where a run's loop stopped.

    Attributes:
      step: the last step done.
      preempted: the loop stopped on SIGTERM.
      eval: the scalars of the last evaluation in this call ({} when none ran).
    """

    step: int
    preempted: bool
    eval: dict[str, float]


class Job(Protocol):
    """What a run does, step by step; :func:`run` calls these in order.

    `state` is the checkpointed pytree (its current value also serves as the template that
    a checkpoint restores onto); `position` is the input's JSON state.
    """

    progress_keys: tuple[str, ...]  # training scalars shown beside the progress bar

    @property
    def state(self) -> Any: ...

    def resume(self, restored: Restored) -> None:
        """Continues from a checkpoint: its state, input position and summary."""

    def step(self) -> None:
        """Does one step (its device work may still be in flight when this returns)."""

    def scalars(self, step: int) -> dict[str, float]:
        """The training scalars since the last call, at `step`; checks they are finite."""

    def evaluate(self) -> dict[str, float]:
        """The held-out scalars of the current model."""

    def checkpoint(self, step: int) -> tuple[dict, dict]:
        """(input position, summary) to save with the state at `step`; checks that the
        state is sound to save."""

    def export(self, out: Path) -> None:
        """Writes the finished model as a bundle to the missing local folder `out`."""


def run(
    workdir: str | os.PathLike,
    command: str,
    schedule: Schedule,
    build_job: Callable[[epath.Path], Job],
    result_of: Callable[[Job, Outcome], dict[str, Any]],
    exported: str,
    strict_restore: bool = False,
) -> dict[str, Any]:
    """Runs (or resumes) a job in `workdir` and returns its result (also written to
    ``result.json``, with the workdir's path under "workdir").

    A workdir that already holds a finished run of `schedule.steps` steps is left as it is
    and its stored result returned; the job is not built.

    Args:
      workdir: the run's folder, a local path or a URL every host of a pod shares.
      command: who holds the workdir's lock ("c2s train"), for a second run's error.
      schedule: when to log, evaluate and save.
      build_job: makes the job (model, optimizer, input) once the lock is held.
      result_of: the result's fields (JSON values) for a job that stopped at an outcome.
      exported: what the bundle holds, for the log ("model", "policy").
      strict_restore: stop when the newest checkpoint cannot be read, instead of resuming
        from the next older one.

    Raises:
      WorkdirBusyError: another run holds `workdir`.
      RestoreError: no checkpoint can be restored (see `strict_restore`).
      NonFiniteLossError: (from the job) the loss became NaN or infinite.
    """
    workdir_path = storage_path(workdir)
    with workdir_lock(workdir_path, command):
        finished = finished_result(workdir_path, schedule.steps)
        if finished is not None:
            return {**finished, "workdir": str(workdir_path)}
        job = build_job(workdir_path)
        outcome = _steps(job, workdir_path, schedule, strict_restore)
        if outcome.step == schedule.steps and not outcome.preempted:
            export_final(workdir_path, outcome.step, job.export, exported)
        result = {"workdir": str(workdir_path), **result_of(job, outcome)}
        write_result(workdir_path, result)
        return result


def _steps(job: Job, workdir: epath.Path, schedule: Schedule, strict_restore: bool) -> Outcome:
    checkpoints = Checkpoints(workdir / "checkpoints", schedule.keep_checkpoints)
    try:
        restored = checkpoints.restore_newest(job.state, strict_restore)
    except BaseException:
        checkpoints.close()
        raise
    step = 0
    if restored is not None:
        job.resume(restored)
        step = restored.step
        log.info("resumed from step %d in %s", step, checkpoints.directory)

    is_chief = jax.process_index() == 0
    writer = MetricWriter(workdir, enabled=is_chief)
    preemption = Preemption()
    bar = tqdm(total=schedule.steps, initial=step, unit="step", disable=not is_chief)
    last_eval: dict[str, float] = {}

    def evaluate(at_step: int) -> None:
        nonlocal last_eval
        last_eval = job.evaluate()
        writer.write(at_step, last_eval, "eval")

    try:
        if step == 0 and schedule.eval_at_start:
            evaluate(0)
        while step < schedule.steps:
            job.step()
            step += 1
            bar.update(1)
            if step % schedule.log_every == 0 or step == schedule.steps:
                scalars = job.scalars(step)
                writer.write(step, scalars)
                bar.set_postfix({k: f"{scalars[k]:.4g}" for k in job.progress_keys})
            if schedule.evaluates_at(step):
                evaluate(step)
            at_save = step % schedule.checkpoint_every == 0 or step == schedule.steps
            if at_save or preemption.requested:
                position, summary = job.checkpoint(step)
                checkpoints.save(step, job.state, position, summary)
                fault_points.reached("checkpoint", step)
            if preemption.requested:
                log.warning("SIGTERM: saved step %d, stopping", step)
                break
        if step == schedule.steps and not last_eval and schedule.evaluates_at(step):
            # Resumed from the final checkpoint of a run that stopped before its result
            # was written: evaluate it, so that the result is complete.
            evaluate(step)
    finally:
        bar.close()
        preemption.restore()
        checkpoints.close()
        writer.close()
    return Outcome(step, preemption.requested, last_eval)
