"""Training in tests: a tiny experiment, its losses, and runs in fresh processes."""

import json
import subprocess
import sys
from pathlib import Path

from tests.support.virtual_devices import virtual_device_env

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "train" / "gemma2_tiny_synthetic.py"
FAST = (
    "train.steps=20",
    "train.log_every=5",
    "train.eval_every=0",
    "train.checkpoint_every=10",
    "data.batch_size=8",
    "data.seq_len=32",
)


def losses(workdir: Path, split: str = "train") -> dict[int, float]:
    """{step: loss} from a run's metrics.jsonl."""
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["split"] == split}


def training_command(workdir: Path, *overrides: str) -> list[str]:
    """The command line that trains the tiny experiment in `workdir`."""
    return [
        sys.executable,
        "-m",
        "c2s_jax.train",
        "--config",
        str(TINY),
        "--workdir",
        str(workdir),
        *(f"--config.{o}" for o in (*FAST, *overrides)),
    ]


def run_training(
    workdir: Path,
    *overrides: str,
    devices: int = 1,
    env: dict | None = None,
    wait: bool = True,
    check: bool = True,
):
    """`python -m c2s_jax.train` in a fresh process with `devices` virtual CPU devices;
    with `check`, asserts that it succeeds."""
    command = training_command(workdir, *overrides)
    environment = {**virtual_device_env(devices), **(env or {})}
    if not wait:
        return subprocess.Popen(
            command,
            env=environment,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    done = subprocess.run(
        command, env=environment, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 or not check, done.stderr[-3000:]
    return done
