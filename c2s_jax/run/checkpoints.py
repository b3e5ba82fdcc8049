"""Orbax checkpoints of a run's state, its input position and a summary, one step directory
each.

Saves are asynchronous (training continues while arrays are written) and keep the last N.
Restoring takes the state's current shardings, so a checkpoint written on one mesh loads
onto another (8 devices -> 4, fsdp -> tensor) without extra code. The directory may be
local or a ``gs://`` URL: orbax writes either, and every host of a pod must see the same one.

A checkpoint that cannot be read (a damaged file, a deleted folder) does not stop a
resume: :meth:`Checkpoints.restore_newest` reports it in one line, sets it aside and takes
the next older one. The orbax format keeps no checksums of array data, so a bit flipped
inside an array's bytes reads back without error; damage to its indexes and metadata does
not.
"""

import dataclasses
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import is_remote, storage_path

log = logging.getLogger(__name__)

# Beside the checkpoints folder: where unreadable checkpoints are moved, for inspection.
UNREADABLE_DIR = "unreadable_checkpoints"


class RestoreError(InputError):
    """No checkpoint of a workdir can be restored (or, strictly, the newest cannot)."""


@dataclasses.dataclass
class Restored:
    """What a checkpoint held.

    Attributes:
      step: its step.
      state: the state, placed like the one restoring it.
      data: the input position (JSON).
      summary: scalars of the step that a finished run reports (e.g. its train loss);
        empty for checkpoints written without one.
    """

    step: int
    state: Any
    data: dict
    summary: dict


class Checkpoints:
    """The checkpoints of one workdir.

    Args:
      directory: where step directories go (created if missing): a local path or a URL.
      keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, keep: int):
        self.directory = storage_path(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=True, create=True
            ),
            item_names=("state", "data", "summary"),
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict, summary: dict | None = None) -> None:
        """Starts an async save of `state`, the iterator's JSON state and `summary` (JSON
        scalars) at `step`.

        The caller decides when to save (interval, end, preemption), so the manager's own
        interval policy is bypassed.
        """
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                summary=ocp.args.JsonSave(summary or {}),
            ),
            force=True,
        )
        log.info("checkpoint at step %d -> %s", step, self.directory)

    def restore(self, step: int, like_state: Any) -> Restored:
        """The checkpoint of `step`, placed with the shardings of `like_state`."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like_state
        )
        items = {"state": ocp.args.StandardRestore(abstract), "data": ocp.args.JsonRestore()}
        if (self.directory / str(step) / "summary").exists():
            items["summary"] = ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return Restored(step, restored["state"], restored["data"], restored.get("summary") or {})

    def restore_newest(self, like_state: Any, strict: bool = False) -> Restored | None:
        """The newest checkpoint that reads, or None when there is none.

        A checkpoint that fails to read is reported in one line and moved to
        ``unreadable_checkpoints/`` beside the checkpoints folder (deleted in object
        stores, which cannot move folders), once an older one has read.

        Args:
          like_state: the state to restore into (shapes, dtypes, shardings).
          strict: stop at the first checkpoint that fails instead of falling back.

        Raises:
          RestoreError: with `strict`, the newest fails; or every checkpoint fails (most
            often the config changed since they were written), which leaves them all as
            they are.
        """
        failed: list[tuple[int, str]] = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                restored = self.restore(step, like_state)
            except Exception as err:  # any failure to read means: try the previous one
                reason = _first_line(err)
                failed.append((step, reason))
                if strict:
                    raise RestoreError(
                        f"the checkpoint of step {step} in {self.directory} cannot be read "
                        f"({reason}); rerun without --strict-restore to fall back to an older "
                        "one"
                    ) from err
                log.warning(
                    "the checkpoint of step %d in %s cannot be read (%s); trying the one before",
                    step,
                    self.directory,
                    reason,
                )
                continue
            for bad, reason in failed:
                self._set_aside(bad, reason)
            return restored
        if failed:
            step, reason = failed[0]
            raise RestoreError(
                f"no checkpoint in {self.directory} can be restored: the newest (step {step}) "
                f"fails with {reason}. If the config changed since they were written, use a "
                "new --workdir; otherwise move the checkpoints folder away to start over"
            )
        return None

    def _set_aside(self, step: int, reason: str) -> None:
        source = self.directory / str(step)
        if is_remote(source):
            source.rmtree(missing_ok=True)
            log.warning("deleted the unreadable checkpoint %s (%s)", source, reason)
        else:
            aside = self.directory.parent / UNREADABLE_DIR
            aside.mkdir(parents=True, exist_ok=True)
            target = aside / str(step)
            copy = 1
            while target.exists():
                target, copy = aside / f"{step}.{copy}", copy + 1
            source.rename(target)
            log.warning("moved the unreadable checkpoint of step %d to %s", step, target)
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
