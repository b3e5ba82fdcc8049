"""Orbax checkpoints of the train state and the data iterator, in one step directory.

Saves are asynchronous (training continues while arrays are written) and keep the last N.
Restoring takes the state's current shardings, so a checkpoint written on one mesh loads
onto another (8 devices -> 4, fsdp -> tensor) without extra code. The directory may be
local or a ``gs://`` URL: orbax writes either, and every host of a pod must see the same one.
"""

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from c2s_jax.atomic_write import storage_path

log = logging.getLogger(__name__)


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
            item_names=("state", "data"),
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict) -> None:
        """Starts an async save of `state` and the iterator's JSON state at `step`.

        The caller decides when to save (interval, end, preemption), so the manager's own
        interval policy is bypassed.
        """
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
            force=True,
        )
        log.info("checkpoint at step %d -> %s", step, self.directory)

    def restore(self, step: int, like_state: Any) -> tuple[Any, dict]:
        """(state, data_state) of `step`, placed with the shardings of `like_state`."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like_state
        )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["data"]

    def wait(self) -> None:
        """Blocks until pending saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
