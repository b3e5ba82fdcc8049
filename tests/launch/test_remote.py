"""The worker-side scripts, run by bash in a fake home folder with a stand-in `c2s`."""

import os
import subprocess
import textwrap
import time

import pytest

from launch import remote

pytestmark = pytest.mark.skipif(
    subprocess.run(["bash", "-c", "command -v setsid"], capture_output=True).returncode,
    reason="needs bash and setsid",
)


@pytest.fixture
def worker(tmp_path):
    """A home folder laid out as `setup` leaves it; `c2s` is a script given per test."""
    (tmp_path / "c2s-jax").mkdir()
    (tmp_path / "c2s-venv" / "bin").mkdir(parents=True)

    def install_c2s(body: str) -> None:
        c2s = tmp_path / "c2s-venv" / "bin" / "c2s"
        c2s.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
        c2s.chmod(0o755)

    def sh(script: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(tmp_path)}
        return subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
        )

    return tmp_path, install_c2s, sh


def test_run_is_detached_idempotent_and_reports_the_exit_status(worker):
    home, install_c2s, sh = worker
    install_c2s(
        """
        echo "cwd=$PWD args=$* KEY=$KEY"
        sleep 0.3
        exit 3
        """
    )
    argv = ["c2s", "train", "--config", "x.py", "--config.model.overrides={'a': 1}"]
    started = sh(remote.run_script("exp1", argv, {"KEY": "two words"}))
    assert started.returncode == 0 and "exp1 started" in started.stdout
    again = sh(remote.run_script("exp1", argv, {"KEY": "two words"}))
    assert "already running" in again.stdout
    followed = sh(remote.follow_script("exp1"))
    assert followed.returncode == 0
    assert f"cwd={home}/c2s-jax args=train --config x.py --config.model.overrides={{'a': 1}}" in (
        followed.stdout
    )
    assert "KEY=two words" in followed.stdout
    checked = sh(remote.check_script("exp1"))
    assert checked.returncode == 1 and "exit status 3" in checked.stderr
    assert sh(remote.follow_script("never-started")).returncode == 1


def test_stop_sends_sigterm_to_the_whole_run(worker):
    home, install_c2s, sh = worker
    install_c2s(
        """
        trap 'echo "checkpoint saved"; exit 0' TERM
        echo running
        while true; do sleep 0.1; done
        """
    )
    assert sh(remote.run_script("exp2", ["c2s", "train"], {})).returncode == 0
    log = home / "c2s-runs" / "exp2.log"
    for _ in range(100):
        if "running" in log.read_text():
            break
        time.sleep(0.05)
    assert "stopping exp2" in sh(remote.stop_script("exp2")).stdout
    assert sh(remote.check_script("exp2")).returncode == 0
    assert "checkpoint saved" in log.read_text()
