"""The end of a run: its model exported as a bundle, then its result, each written whole.

The result (``result.json``) is written last, so a run killed while finishing leaves no
result and its rerun finishes it again from the final checkpoint. A stored result counts
as finished only if it ran all its steps, its export is there and every number in it is
finite; otherwise the rerun redoes the export and the result.
"""

import json
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from etils import epath

from c2s_jax import fault_points
from c2s_jax.checkpoints.bundle import BUNDLE_FILE, EXPORTS_DIR
from c2s_jax.storage.atomic import (
    is_remote,
    remove_stale_temporaries_in,
    upload_directory,
    write_text_atomic,
)

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


def export_dir(workdir: epath.Path, step: int) -> epath.Path:
    """Where the bundle of `step` goes in `workdir`."""
    return workdir / EXPORTS_DIR / f"step_{step:07d}"


def stored_result(workdir: epath.Path, steps: int, exported: bool) -> dict[str, Any] | None:
    """The stored result of a run in `workdir` that finished all `steps`, or None.

    Args:
      workdir: the run's folder.
      steps: how many steps the run is configured for.
      exported: whether a finished run has a bundle in ``exports/`` (single-process runs).
    """
    path = workdir / RESULT_FILE
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        log.warning("%s cannot be read: finishing the run again", path)
        return None
    if result.get("step") != steps or result.get("preempted"):
        return None
    if not _all_finite(result):
        log.warning("%s holds a number that is not finite: finishing the run again", path)
        return None
    if exported and not (export_dir(workdir, steps) / BUNDLE_FILE).exists():
        log.warning("%s has no export of step %d: finishing the run again", workdir, steps)
        return None
    return result


def finished_result(workdir: epath.Path, steps: int) -> dict[str, Any] | None:
    """The start of a run in `workdir`: removes what killed processes of this host left
    there, and returns the stored result if the run of `steps` steps finished already
    (saying so), else None."""
    for folder in (workdir, workdir / EXPORTS_DIR):
        remove_stale_temporaries_in(folder)
    finished = stored_result(workdir, steps, exported=jax.process_count() == 1)
    if finished is not None:
        log.warning(
            "%s finished at step %d already; raise config.train.steps to train further",
            workdir,
            steps,
        )
    return finished


def export_final(
    workdir: epath.Path, step: int, write_bundle: Callable[[Path], None], what: str
) -> None:
    """Writes the bundle of the finished `step` into ``exports/`` and drops older exports.

    Args:
      workdir: the run's folder, local or a URL.
      step: the final step.
      write_bundle: writes a bundle to a missing local folder (atomically).
      what: what the bundle holds, for the log ("model", "policy").
    """
    if jax.process_count() > 1:
        # A bundle is written by one process from host memory; a multi-host run keeps its
        # orbax checkpoint, which a single host can restore and export.
        log.info("multi-host run: no bundle export (the checkpoint is kept)")
        return
    target = export_dir(workdir, step)
    if not (target / BUNDLE_FILE).exists():
        if is_remote(workdir):
            # A bundle appears whole through a local rename, which object stores lack: build
            # it here and upload it with its manifest last, which is what readers look for.
            with tempfile.TemporaryDirectory(prefix="c2s-export-") as staging:
                local = Path(staging) / target.name
                write_bundle(local)
                upload_directory(local, target, BUNDLE_FILE)
        else:
            if target.exists():  # an upload or copy cut short: no manifest, so no bundle
                target.rmtree()
            write_bundle(Path(target))
        log.info("exported the %s to %s", what, target)
    for older in (workdir / EXPORTS_DIR).glob("step_*"):
        if older != target:
            older.rmtree(missing_ok=True)


def write_result(workdir: epath.Path, result: dict[str, Any]) -> None:
    """Writes `result` to ``result.json`` (process 0 only), after everything else."""
    fault_points.reached("result")
    if jax.process_index() == 0:
        write_text_atomic(workdir / RESULT_FILE, json.dumps(result, indent=1))


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(v) for v in value)
    return True
