"""The local runner on a two-member sweep of a one-layer model (two steps), restarted after
a kill; the other cases need no training.
"""

import json
import math
import shutil
import sys

import jax
import pytest

from c2s_jax.cli import main
from c2s_jax.run.workdir_lock import workdir_lock
from c2s_jax.scaling import local, results
from c2s_jax.scaling.local import run_local
from c2s_jax.scaling.spec import load_sweep
from c2s_jax.storage.json_lines import append_json_line
from c2s_jax.train.loop import train
from tests.support.sweep_files import TINY_RUN, write_sweep

NAMES = ["seed-0", "seed-1"]
# seed-0 counts as finished by an earlier run, so the module trains seed-1 alone.
EARLIER = {"name": "seed-0", "loss": 3.0}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(sweep file, output folder) of a two-member sweep restarted after a kill.

    The kill left seed-0 recorded, seed-1 with a checkpoint at step 1 of 2 and no
    record, and half a line at the end of results.jsonl. The restart runs once for the
    module; its one child process shares a persistent XLA cache and compiles quickly.
    """
    folder = tmp_path_factory.mktemp("sweep")
    out = folder / "out"
    sweep_file = write_sweep(folder / "two.py", 'axis("seed", "seed", (0, 1))')
    sweep = load_sweep(sweep_file)
    # seed-1's first step, trained here to leave the state a kill leaves.
    interrupted = sweep.member_config(sweep.members[1])
    interrupted.train.steps = 1
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        train(interrupted, out / "seed-1")
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
    append_json_line(out / "results.jsonl", EARLIER)
    with (out / "results.jsonl").open("a") as f:
        f.write('{"name": "seed-1", "lo')
    with pytest.MonkeyPatch.context() as patch:
        for key, value in fast_jax_env(folder).items():
            patch.setenv(key, value)
        assert main(["sweep", "--config", str(sweep_file), "--out", str(out)]) == 0
    return sweep_file, out


def fast_jax_env(folder) -> dict[str, str]:
    """CPU, a persistent XLA cache shared by the children, and quick compiles."""
    return {
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(folder / "xla_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
    }


@pytest.fixture
def out(finished, tmp_path, monkeypatch):
    """A private copy of the finished sweep's output, and the env its children need."""
    for key, value in fast_jax_env(finished[1].parent).items():
        monkeypatch.setenv(key, value)
    return shutil.copytree(finished[1], tmp_path / "out")


def train_steps(workdir) -> list[int]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["split"] == "train"]


def test_a_restart_skips_recorded_members_and_resumes_the_interrupted_one(finished):
    out = finished[1]
    records = results.read_results(out / "results.jsonl")
    assert [r["name"] for r in records] == NAMES
    assert records[0] == EARLIER and not (out / "seed-0").exists()  # not trained again
    assert (out / "results.jsonl").read_text().count("\n") == 2  # the half line is gone
    assert train_steps(out / "seed-1") == [1, 2]  # resumed after step 1, not restarted
    assert sorted(p.name for p in (out / "seed-1" / "checkpoints").iterdir()) == ["1", "2"]


def test_records_hold_parameters_tokens_flops_and_losses(finished):
    record = results.read_results(finished[1] / "results.jsonl")[1]
    assert record["axes"] == {"seed": "1"} and record["config"]["seed"] == 1
    assert record["workdir"] == str(finished[1] / "seed-1")
    assert record["steps"] == 2 and record["tokens"] == 2 * 2 * 8
    assert record["n_params"] == 1 * (2 * 8 * 8 + 2 * 8 * 8 + 3 * 8 * 16 + 4 * 8) + 8
    assert record["n_params_total"] == record["n_params"] + 32 * 8
    assert record["flops"] > 6 * record["n_params"] * record["tokens"]
    assert math.isfinite(record["loss"]) and set(record["task_loss"]) == {"task0", "task1"}
    result = json.loads((finished[1] / "seed-1" / "result.json").read_text())
    assert (record["loss"], record["task_loss"]) == (result["eval_loss"], result["eval_task_loss"])


def test_a_finished_but_unrecorded_member_is_recorded_without_training(finished, out):
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text(lines[0])
    log = (out / "logs" / "seed-1.log").read_text()
    run_local(load_sweep(finished[0]), out)
    assert (out / "logs" / "seed-1.log").read_text() == log
    before = [json.loads(line) for line in lines]
    after = results.read_results(out / "results.jsonl")
    assert [(r["name"], r["loss"]) for r in after] == [(r["name"], r["loss"]) for r in before]


def test_dry_run_lists_members_and_their_overrides(finished, out, capsys):
    (out / "results.jsonl").write_text((out / "results.jsonl").read_text().splitlines()[0] + "\n")
    assert main(["sweep", "--config", str(finished[0]), "--out", str(out), "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert f"[done] seed-0 -> {out / 'seed-0'}" in shown
    assert f"[todo] seed-1 -> {out / 'seed-1'}" in shown and "    seed=1" in shown
    assert all(o in shown for o in TINY_RUN)


def test_a_failing_member_stops_the_sweep_naming_its_log(tmp_path, capsys, monkeypatch):
    def failing(sweep, member, workdir):
        return [sys.executable, "-c", f"print('{member.name} cannot train'); exit(2)"]

    monkeypatch.setattr(local, "train_command", failing)
    sweep_file = write_sweep(tmp_path / "s.py", 'axis("seed", "seed", (0, 1))')
    with pytest.raises(SystemExit):
        main(["sweep", "--config", str(sweep_file), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "member seed-0 failed (exit status 2)" in err and "seed-0.log" in err
    assert "seed-0 cannot train" in err  # the tail of its log
    assert not (tmp_path / "out" / "logs" / "seed-1.log").exists()
    assert results.read_results(tmp_path / "out" / "results.jsonl") == []


def test_the_train_command_is_c2s_train_with_the_member_overrides(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.py", 'axis("seed", "seed", (0, 1))'))
    command = local.train_command(sweep, sweep.members[1], tmp_path / "seed-1")
    assert command[:8] == [
        sys.executable, "-m", "c2s_jax", "train",
        "--config", str(sweep.base), "--workdir", str(tmp_path / "seed-1"),
    ]  # fmt: skip
    assert command[8:] == [f"--config.{o}" for o in (*TINY_RUN, "seed=1")]
    assert results.read_results(tmp_path / "out" / "results.jsonl") == []


def test_a_second_sweep_on_the_same_out_stops_naming_the_first(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.py", 'axis("seed", "seed", (0, 1))')
    with workdir_lock(tmp_path / "out", "c2s sweep"):
        assert main(["sweep", "--config", str(sweep_file), "--out", str(tmp_path / "out")]) == 2
    assert "is in use by c2s sweep (pid" in capsys.readouterr().err
    assert not (tmp_path / "out" / "logs").exists()
