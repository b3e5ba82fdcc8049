"""Where metrics go: TensorBoard event files, a JSON-lines file, and the console."""

import json
import os
from pathlib import Path

from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes scalars to `workdir/tensorboard` and `workdir/metrics.jsonl` (process 0 only).

    The JSON-lines file is what sweeps and tests read; TensorBoard is for people.
    """

    def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
        self.enabled = enabled
        self._tensorboard = None
        self._lines = None
        if enabled:
            self._tensorboard = SummaryWriter(str(Path(workdir) / "tensorboard"))
            self._lines = open(Path(workdir) / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def write(self, step: int, scalars: dict[str, float], prefix: str = "train") -> None:
        """Records `scalars` at `step` under `prefix/` (train or eval)."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tensorboard.add_scalar(f"{prefix}/{name}", value, step)
        self._lines.write(json.dumps({"step": step, "split": prefix, **scalars}) + "\n")
        self._lines.flush()

    def close(self) -> None:
        """Flushes and closes both outputs."""
        if self.enabled:
            self._tensorboard.close()
            self._lines.close()
