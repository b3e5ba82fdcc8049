"""Runs killed at the worst moments, and checkpoints damaged on disk, recover: the rerun
ends with the same losses and result as a run that was never interrupted, and leaves no
temporaries behind. Kills are real SIGKILLs at named moments (`run.fault_points`). The
tests that run fresh processes are marked `faults` (CI's second step: pytest -m faults)."""

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2s_jax.fault_points import KILL_ENV
from c2s_jax.run.checkpoints import UNREADABLE_DIR
from c2s_jax.storage.cache import CACHE_ENV
from c2s_jax.train.loop import train
from tests.support.training import losses, run_training, training_command
from tests.support.virtual_devices import virtual_device_env


def _killed_at(workdir: Path, moment: str) -> None:
    process = run_training(workdir, env={KILL_ENV: moment}, wait=False)
    process.communicate(timeout=300)
    assert process.returncode == -9, f"not killed at {moment}"


def _temporaries(workdir: Path) -> list[Path]:
    return [p for p in workdir.rglob(".*.tmp")]


@pytest.mark.slow
@pytest.mark.faults
def test_kills_while_checkpointing_exporting_and_writing_the_result_lose_nothing(tmp_path):
    run_training(tmp_path / "reference")
    reference = json.loads((tmp_path / "reference" / "result.json").read_text())

    workdir = tmp_path / "killed"
    _killed_at(workdir, "checkpoint:20")  # the final checkpoint is being written
    assert not (workdir / "result.json").exists()
    _killed_at(workdir, "export")  # the bundle is half written
    assert _temporaries(workdir / "exports") and not (workdir / "result.json").exists()
    _killed_at(workdir, "result")  # everything but the result is written
    assert not (workdir / "result.json").exists()
    run_training(workdir)

    result = json.loads((workdir / "result.json").read_text())
    assert result["train_loss"] == reference["train_loss"]  # finite, from the checkpoint
    assert result["step"] == 20 and not result["preempted"]
    assert losses(workdir) == losses(tmp_path / "reference")
    assert [p.name for p in (workdir / "exports").iterdir()] == ["step_0000020"]
    assert not _temporaries(workdir)
    assert not (workdir / "run.lock").exists()


def test_a_damaged_final_checkpoint_is_set_aside_and_the_steps_after_the_one_before_rerun(
    tiny_config, tmp_path
):
    cfg = tiny_config()
    first = train(cfg, tmp_path)
    # The run is lost from its final checkpoint on: its export and result are gone and the
    # checkpoint's index is damaged.
    shutil.rmtree(tmp_path / "exports")
    (tmp_path / "result.json").unlink()
    (tmp_path / "checkpoints" / "20" / "state" / "manifest.ocdbt").write_bytes(b"\0" * 64)

    again = train(cfg, tmp_path)
    assert (tmp_path / UNREADABLE_DIR / "20").is_dir()
    assert again.train_loss == first.train_loss and again.step == 20
    assert (tmp_path / "exports" / "step_0000020").is_dir()


@pytest.mark.slow
@pytest.mark.faults
def test_a_second_train_on_a_busy_workdir_stops_in_one_line(tmp_path):
    holder = run_training(tmp_path, "train.steps=100000", wait=False)
    try:
        while not (tmp_path / "run.lock").exists() or not (tmp_path / "run.lock").read_text():
            if holder.poll() is not None:
                raise AssertionError(holder.stderr.read())
            time.sleep(0.2)
        second = run_training(tmp_path, check=False)
    finally:
        holder.kill()
        holder.communicate()
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1].startswith("c2s train: error: ")
    assert f"in use by c2s train (pid {holder.pid} " in second.stderr


def _limited_file_size(kib: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return limit


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.parametrize("verb", ["train", "sentences"])
def test_a_full_disk_ends_in_one_line_with_the_cause_last(verb, tmp_path, pbmc_counts):
    # `ulimit -f` makes writes past the limit fail with EFBIG, as a full disk fails them
    # with ENOSPC, on any machine.
    if verb == "train":
        command = training_command(tmp_path / "run")
        limit = 40  # KiB: the metrics fit, the first checkpoint does not
    else:
        source = tmp_path / "cells.h5ad"
        pbmc_counts.write_h5ad(source)
        command = [
            sys.executable,
            "-m",
            "c2s_jax",
            "sentences",
            str(source),
            str(tmp_path / "out.parquet"),
            "--no-progress",
        ]
        limit = 8
    environment = {**virtual_device_env(1), CACHE_ENV: str(tmp_path / "cache")}
    done = subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limited_file_size(limit),
    )
    lines = [x for x in done.stderr.splitlines() if x.strip() and "%|" not in x]
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines[-1].startswith(f"c2s {verb}: error: "), done.stderr[-3000:]
    assert "file size limit" in lines[-1]
    assert "Traceback" not in done.stderr and len(lines) < 12, done.stderr[-3000:]
