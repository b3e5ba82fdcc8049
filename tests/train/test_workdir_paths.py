"""Workdirs on object stores (gs://) and reruns of finished runs.

The gs:// tests run against the stand-in bucket of `tests/conftest.py`.
"""

import dataclasses
import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from c2s_jax.checkpoints.bundle import BUNDLE_FILE
from c2s_jax.run import runner
from c2s_jax.run.checkpoints import Checkpoints
from c2s_jax.run.metrics import MetricWriter
from c2s_jax.storage.atomic import atomic_path, storage_path, write_text_atomic
from c2s_jax.train import loop
from c2s_jax.train.loop import TrainResult, train


def test_storage_path_keeps_urls_and_makes_local_paths_absolute():
    assert str(storage_path("gs://bucket/runs/a")) == "gs://bucket/runs/a"
    assert str(storage_path("runs/a")) == os.path.join(os.getcwd(), "runs", "a")


def test_an_atomic_write_to_a_bucket_is_one_upload_or_nothing(bucket_root):
    write_text_atomic("gs://b/run/result.json", "first")
    write_text_atomic("gs://b/run/result.json", "second")
    assert (bucket_root / "b" / "run" / "result.json").read_text() == "second"
    with pytest.raises(RuntimeError), atomic_path("gs://b/run/broken.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("failed while writing")
    assert not (bucket_root / "b" / "run" / "broken.json").exists()


def test_metrics_in_a_bucket_are_uploaded_whole_and_continued_after_a_restart(bucket_root):
    stored = bucket_root / "b" / "run" / "metrics.jsonl"
    first = MetricWriter("gs://b/run", sync_every_s=0.0)
    first.write(1, {"loss": 3.0})
    assert [json.loads(x)["step"] for x in stored.read_text().splitlines()] == [1]
    first.close()
    # A restarted run (a new host, say) finds the stored log and continues it.
    second = MetricWriter("gs://b/run", sync_every_s=3600.0)
    second.write(2, {"loss": 2.0})
    assert len(stored.read_text().splitlines()) == 1  # the next upload is not due yet
    second.close()
    records = [json.loads(x) for x in stored.read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(1, 3.0), (2, 2.0)]
    events = list((bucket_root / "b" / "run" / "tensorboard").iterdir())
    assert events and all(e.name.startswith("events.out.tfevents") for e in events)


class _RebuiltError(Exception):
    """Raised where a rerun would build the model and the input pipeline again."""


def _refuse_to_build(*args, **kwargs):
    raise _RebuiltError


def _finished_workdir(
    workdir: Path, steps: int, preempted: bool = False, train_loss: float = 1.5
) -> TrainResult:
    """A workdir as a run of `steps` steps leaves it: a checkpoint at `steps`, its export's
    manifest, result.json."""
    checkpoints = Checkpoints(workdir / "checkpoints", keep=1)
    checkpoints.save(steps, {"w": jnp.zeros(3)}, {"position": steps})
    checkpoints.close()
    export = workdir / "exports" / f"step_{steps:07d}"
    export.mkdir(parents=True)
    (export / BUNDLE_FILE).write_text("{}")
    result = TrainResult(str(workdir), steps, train_loss, 1.25, {"task0": 1.25}, preempted, 1000)
    (workdir / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=1))
    return result


def test_rerunning_a_finished_run_returns_its_result_untouched(tiny_config, tmp_path, monkeypatch):
    stored = _finished_workdir(tmp_path, steps=20)
    before = (tmp_path / "result.json").read_bytes()
    monkeypatch.setattr(loop, "create_train_state", _refuse_to_build)
    assert train(tiny_config(), tmp_path) == stored
    assert (tmp_path / "result.json").read_bytes() == before
    # More steps than were run: training goes on from the checkpoint.
    with pytest.raises(_RebuiltError):
        train(tiny_config("train.steps=40"), tmp_path)


def test_a_run_stopped_by_sigterm_at_its_last_step_is_not_finished(
    tiny_config, tmp_path, monkeypatch
):
    _finished_workdir(tmp_path, steps=20, preempted=True)
    monkeypatch.setattr(loop, "create_train_state", _refuse_to_build)
    with pytest.raises(_RebuiltError):
        train(tiny_config(), tmp_path)


def test_training_in_a_bucket_writes_everything_there(
    bucket_root, tiny_config, tmp_path, monkeypatch
):
    # tensorstore writes checkpoint arrays to Cloud Storage through its own client, which
    # the stand-in bucket cannot serve: checkpoints go to a local folder here.
    monkeypatch.setattr(
        runner, "Checkpoints", lambda directory, keep: Checkpoints(tmp_path / "orbax", keep)
    )
    cfg = tiny_config(
        "train.steps=4", "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4"
    )
    result = train(cfg, "gs://b/runs/tiny")
    run = bucket_root / "b" / "runs" / "tiny"
    assert result.workdir == "gs://b/runs/tiny"
    assert json.loads((run / "result.json").read_text())["eval_loss"] == result.eval_loss
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["step"]) for r in records] == [("train", 2), ("train", 4), ("eval", 4)]
    assert list((run / "tensorboard").iterdir())
    bundle = run / "exports" / "step_0000004"
    assert json.loads((bundle / BUNDLE_FILE).read_text())["tokenizer_family"] == "c2s"
    assert (bundle / "model_config.json").exists()

    # A rerun finds the run finished and leaves the bucket as it is.
    before = (run / "result.json").read_bytes()
    monkeypatch.setattr(loop, "create_train_state", _refuse_to_build)
    assert train(cfg, "gs://b/runs/tiny") == result
    assert (run / "result.json").read_bytes() == before


def test_a_finished_run_without_its_export_or_with_a_nan_result_is_finished_again(
    tiny_config, tmp_path, monkeypatch
):
    monkeypatch.setattr(loop, "create_train_state", _refuse_to_build)
    _finished_workdir(tmp_path / "no_export", steps=20)
    (tmp_path / "no_export" / "exports" / "step_0000020" / BUNDLE_FILE).unlink()
    _finished_workdir(tmp_path / "nan", steps=20, train_loss=float("nan"))
    for workdir in ("no_export", "nan"):
        with pytest.raises(_RebuiltError):
            train(tiny_config(), tmp_path / workdir)


@pytest.mark.slow
def test_a_rerun_after_a_lost_result_evaluates_the_final_checkpoint(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=4", "train.eval_every=4", "train.checkpoint_every=4")
    result = train(cfg, tmp_path)
    # The run ended before writing its result (killed during the export, say): a rerun
    # evaluates the final checkpoint again instead of reporting no evaluation.
    (tmp_path / "result.json").unlink()
    again = train(cfg, tmp_path)
    assert again.step == 4
    np.testing.assert_allclose(again.eval_loss, result.eval_loss, rtol=1e-6)
    assert again.train_loss == result.train_loss  # kept in the final checkpoint
    assert json.loads((tmp_path / "result.json").read_text())["eval_loss"] == again.eval_loss
