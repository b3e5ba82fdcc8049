"""One workdir, one writer: the lock refuses a second run, names the holder, and is taken
over from a run that died (locally through flock, in a bucket by host and pid)."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from c2s_jax.run.workdir_lock import LOCK_FILE, WorkdirBusyError, workdir_lock


def _take_and_release(workdir, command: str) -> None:
    with workdir_lock(workdir, command):
        pass


def test_a_second_holder_is_refused_with_the_first_named(tmp_path):
    with workdir_lock(tmp_path, "c2s train"):
        with pytest.raises(WorkdirBusyError) as err, workdir_lock(tmp_path, "c2s grpo"):
            pass
        message = str(err.value)
        assert f"is in use by c2s train (pid {os.getpid()} on {socket.gethostname()}" in message
        assert str(tmp_path / LOCK_FILE) in message and "\n" not in message
    assert not (tmp_path / LOCK_FILE).exists()  # released
    with workdir_lock(tmp_path, "c2s train"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["command"] == "c2s train"


def test_the_lock_of_a_killed_process_is_taken_over_with_a_note(tmp_path, caplog):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from c2s_jax.run.workdir_lock import workdir_lock
                with workdir_lock({str(tmp_path)!r}, "c2s train"):
                    print("held", flush=True)
                    time.sleep(600)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusyError, match=f"pid {holder.pid} "):
            _take_and_release(tmp_path, "c2s train")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with caplog.at_level(logging.WARNING), workdir_lock(tmp_path, "c2s train"):
        pass
    assert f"taking over the lock of c2s train (pid {holder.pid}" in caplog.text


def test_a_bucket_lock_refuses_a_second_run_and_takes_over_a_dead_one(bucket_root, caplog):
    with workdir_lock("gs://b/run", "c2s train"):
        stored = json.loads((bucket_root / "b" / "run" / LOCK_FILE).read_text())
        assert stored["pid"] == os.getpid()
        with pytest.raises(WorkdirBusyError, match="in use by c2s train"):
            _take_and_release("gs://b/run", "c2s train")
    assert not (bucket_root / "b" / "run" / LOCK_FILE).exists()

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    lock = bucket_root / "b" / "run" / LOCK_FILE
    lock.write_text(
        json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "command": "c2s grpo"})
    )
    with caplog.at_level(logging.WARNING), workdir_lock("gs://b/run", "c2s train"):
        assert json.loads(lock.read_text())["command"] == "c2s train"
    assert "taking over the lock of c2s grpo" in caplog.text

    # A process of another host cannot be checked from here: it is named, not taken over.
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "command": "c2s train"}))
    with pytest.raises(WorkdirBusyError, match=r"pid 1 on elsewhere.*delete gs://b/run/run.lock"):
        _take_and_release("gs://b/run", "c2s train")
