"""Training across real processes: SIGTERM preemption, and two hosts over gloo."""

import re
import signal
import socket
import time

import pytest

from tests.support.training import losses, run_training


@pytest.mark.slow
@pytest.mark.integration
def test_sigterm_saves_the_current_step_and_exits_cleanly(tmp_path):
    run = run_training(tmp_path, "train.steps=100000", "train.checkpoint_every=100000", wait=False)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert run.poll() is None and time.time() < deadline, run.stderr.read()[-2000:]
        time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr[-2000:]
    step = int(re.search(r"stopped by SIGTERM at step (\d+)", stdout).group(1))
    assert 10 <= step < 100000
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [step]
    # The same command resumes from there.
    resumed = run_training(tmp_path, f"train.steps={step + 5}")
    assert f"finished at step {step + 5}" in resumed.stdout
    assert max(losses(tmp_path)) == step + 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_train_together_over_gloo(tmp_path):
    port = _free_port()
    runs = [
        run_training(
            tmp_path,
            "train.steps=10",
            f"distributed.coordinator_address='localhost:{port}'",
            "distributed.num_processes=2",
            f"distributed.process_id={i}",
            wait=False,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
    final = [re.search(r"train loss ([\d.]+)", out).group(1) for out, _ in outputs]
    assert final[0] == final[1]
    assert sorted(losses(tmp_path)) == [5, 10]  # written once, by process 0
