"""Restoring the newest checkpoint that reads: a damaged newest one is reported, set aside
and the one before it taken; with strict restore, or when none reads, one clear error."""

import logging
import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.run.checkpoints import UNREADABLE_DIR, Checkpoints, RestoreError


def _state(step: int) -> dict:
    return {"w": jnp.arange(1000.0) + step, "b": jnp.full((40, 40), float(step))}


def _write(directory: Path, steps=(1, 2, 3)) -> None:
    checkpoints = Checkpoints(directory, keep=5)
    for step in steps:
        checkpoints.save(step, _state(step), {"position": step}, {"train_loss": 1.0 / step})
        checkpoints.wait()
    checkpoints.close()


def _largest_array_file(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


DAMAGE = {
    "emptied _METADATA": lambda d: (d / "state" / "_METADATA").write_text(""),
    "garbled manifest": lambda d: (d / "state" / "manifest.ocdbt").write_bytes(b"\0" * 64),
    "missing state/": lambda d: shutil.rmtree(d / "state"),
    "truncated array file": lambda d: os.truncate(_largest_array_file(d), 100),
    "deleted array file": lambda d: _largest_array_file(d).unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, damage, caplog):
    _write(tmp_path / "checkpoints")
    DAMAGE[damage](tmp_path / "checkpoints" / "3")
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=5)
    with caplog.at_level(logging.WARNING):
        restored = checkpoints.restore_newest(_state(0))
    assert restored.step == 2 and restored.data == {"position": 2}
    assert restored.summary == {"train_loss": 0.5}
    np.testing.assert_array_equal(restored.state["w"], _state(2)["w"])
    assert "the checkpoint of step 3" in caplog.text and "cannot be read" in caplog.text
    # Set aside for inspection, and out of the way of the step the run saves next.
    assert (tmp_path / UNREADABLE_DIR / "3").is_dir()
    checkpoints.save(3, _state(3), {"position": 3}, {"train_loss": 0.25})
    checkpoints.close()
    reopened = Checkpoints(tmp_path / "checkpoints", keep=5)
    again = reopened.restore_newest(_state(0))
    reopened.close()
    assert again.step == 3 and again.summary == {"train_loss": 0.25}


def test_strict_restore_stops_at_the_damaged_checkpoint_and_moves_nothing(tmp_path):
    _write(tmp_path / "checkpoints")
    DAMAGE["emptied _METADATA"](tmp_path / "checkpoints" / "3")
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=5)
    with pytest.raises(RestoreError, match=r"step 3 in .* cannot be read .*--strict-restore"):
        checkpoints.restore_newest(_state(0), strict=True)
    checkpoints.close()
    assert (tmp_path / "checkpoints" / "3").is_dir()
    assert not (tmp_path / UNREADABLE_DIR).exists()


def test_when_no_checkpoint_reads_the_error_says_why_and_nothing_is_moved(tmp_path):
    _write(tmp_path / "checkpoints", steps=(1, 2))
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=5)
    changed = {"w": jnp.zeros(7), "b": jnp.zeros((40, 40))}  # the config changed the shapes
    with pytest.raises(RestoreError, match=r"no checkpoint .*step 2.*new --workdir"):
        checkpoints.restore_newest(changed)
    checkpoints.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]


def test_no_checkpoints_restore_to_nothing(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints", keep=2)
    assert checkpoints.restore_newest(_state(0)) is None
    checkpoints.close()
