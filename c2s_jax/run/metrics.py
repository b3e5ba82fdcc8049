"""Where metrics go: TensorBoard event files, a JSON-lines file, and the console.

In a local workdir both files grow in place. Object stores (``gs://``) cannot append to
an object, so for a remote workdir both are kept in a local staging folder (starting from
the workdir's existing ``metrics.jsonl``, so a resumed run continues it) and each file is
uploaded whole, replacing the previous copy, at most every ``sync_every_s`` seconds and
when the writer closes. A crash loses at most that interval of remote metrics; the
checkpoints hold the training state itself.
"""

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from c2s_jax.storage.atomic import is_remote, storage_path, upload_file

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricWriter:
    """Writes scalars to `workdir/tensorboard` and `workdir/metrics.jsonl` (process 0 only).

    The JSON-lines file is what sweeps and tests read; TensorBoard is for people.

    Args:
      workdir: a local path or a remote URL (``gs://bucket/run``).
      enabled: False on processes other than 0: then nothing is written.
      sync_every_s: for a remote workdir, the least time between uploads, in seconds.
    """

    def __init__(
        self, workdir: str | os.PathLike, enabled: bool = True, sync_every_s: float = 60.0
    ):
        self.enabled = enabled
        self._remote = storage_path(workdir) if is_remote(workdir) else None
        self._sync_every_s = sync_every_s
        self._last_sync = time.monotonic()
        if not enabled:
            return
        local = Path(workdir)
        if self._remote is not None:
            local = Path(tempfile.mkdtemp(prefix="c2s-metrics-"))
            existing = self._remote / METRICS_FILE
            if existing.exists():
                (local / METRICS_FILE).write_bytes(existing.read_bytes())
            log.info("metrics for %s are staged in %s and uploaded", self._remote, local)
        # tensorboardX imports torch (seconds of start-up), so only a writer pays for it.
        from tensorboardX import SummaryWriter

        self._tensorboard = SummaryWriter(str(local / TENSORBOARD_DIR))
        self._local = local
        self._lines = open(local / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, step: int, scalars: dict[str, float], prefix: str = "train") -> None:
        """Records `scalars` at `step` under `prefix/` (train or eval)."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tensorboard.add_scalar(f"{prefix}/{name}", value, step)
        self._lines.write(json.dumps({"step": step, "split": prefix, **scalars}) + "\n")
        self._lines.flush()
        if self._remote is not None and time.monotonic() - self._last_sync >= self._sync_every_s:
            self._tensorboard.flush()
            self._upload()

    def close(self) -> None:
        """Flushes and closes both outputs (and uploads them for a remote workdir)."""
        if not self.enabled:
            return
        self._tensorboard.close()
        self._lines.close()
        if self._remote is not None:
            self._upload()
            shutil.rmtree(self._local, ignore_errors=True)

    def _upload(self) -> None:
        staged = sorted((self._local / TENSORBOARD_DIR).iterdir())
        for path in [self._local / METRICS_FILE, *staged]:
            upload_file(path, self._remote / path.relative_to(self._local).as_posix())
        self._last_sync = time.monotonic()
