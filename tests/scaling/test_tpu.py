"""The TPU runner: launch commands per member, a dry run that runs nothing, records read back.

A stand-in `gcloud` first on PATH logs every call (and answers `storage cat` with a
result.json), so the launcher's child processes are covered too.
"""

import os
import shlex

import pytest

from c2s_jax.errors import InputError
from c2s_jax.scaling import results
from c2s_jax.scaling.spec import load_sweep
from c2s_jax.scaling.tpu import run_tpu
from tests.support.sweep_files import write_sweep

LAUNCH_ARGS = ["--name", "c2s-ms", "--zone", "us-west4-a", "--accelerator-type", "v5e-256"]
ROOT = "gs://c2s-bucket/sweeps/two"
RESULT = {"step": 2, "eval_loss": 3.25, "eval_task_loss": {"task0": 3.0}, "train_loss": 3.5}


@pytest.fixture
def gcloud_log(tmp_path, monkeypatch):
    """Path of the stand-in gcloud's call log (one shell-quoted argv per line)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "gcloud_calls.txt"
    fake = bin_dir / "gcloud"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import json, shlex, sys\n"
        f"open({str(log)!r}, 'a').write(shlex.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['storage', 'cat']:\n"
        f"    print(json.dumps({{**{RESULT!r}, 'preempted': False}}))\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


@pytest.fixture
def sweep(tmp_path):
    return load_sweep(write_sweep(tmp_path / "two.py", 'axis("seed", "seed", (0, 1))'))


def test_dry_run_prints_each_members_launch_commands_and_runs_none(
    sweep, tmp_path, gcloud_log, capfd
):
    run_tpu(sweep, tmp_path / "out", ROOT, ["--slices", "2", *LAUNCH_ARGS], dry_run=True)
    commands = [shlex.split(line) for line in capfd.readouterr().out.splitlines()]
    assert not gcloud_log.exists()
    runs = [c for c in commands if "ssh" in c and any("c2s train" in a for a in c)]
    assert len(runs) == 2
    for seed, run in enumerate(runs):
        script = next(a for a in run if a.startswith("--command="))
        assert {"--node=all", "--worker=all"} <= set(run)
        assert f"--workdir {ROOT}/seed-{seed} --config.distributed.auto=True" in script
        assert "--config.dcn_data=2" in script and f"--config.seed={seed}" in script
    fetches = [c for c in commands if c[:3] == ["gcloud", "storage", "cat"]]
    assert fetches == [["gcloud", "storage", "cat", f"{ROOT}/seed-{s}/result.json"] for s in (0, 1)]
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_members_run_through_the_launcher_and_their_results_are_recorded(
    sweep, tmp_path, gcloud_log
):
    out = tmp_path / "out"
    run_tpu(sweep, out, ROOT, LAUNCH_ARGS)
    records = results.read_results(out / "results.jsonl")
    assert [r["name"] for r in records] == ["seed-0", "seed-1"]
    assert records[1]["workdir"] == f"{ROOT}/seed-1" and records[1]["loss"] == RESULT["eval_loss"]
    assert records[1]["tokens"] == 2 * 2 * 8 and records[1]["config"]["seed"] == 1
    calls = [shlex.split(line) for line in gcloud_log.read_text().splitlines()]
    # Per member: start on all workers, follow the log, check every worker, read the result.
    assert [c[3] if c[0] == "compute" else c[1] for c in calls] == ["ssh", "ssh", "ssh", "cat"] * 2

    run_tpu(sweep, out, ROOT, LAUNCH_ARGS)  # everything recorded: nothing runs again
    assert len(gcloud_log.read_text().splitlines()) == len(calls)


def test_a_preempted_member_stops_the_sweep_with_what_to_do(sweep, tmp_path, gcloud_log):
    from c2s_jax.scaling.local import MemberFailedError

    fake = gcloud_log.parent / "bin" / "gcloud"
    fake.write_text(fake.read_text().replace("'preempted': False", "'preempted': True"))
    with pytest.raises(MemberFailedError, match="python -m launch create"):
        run_tpu(sweep, tmp_path / "out", ROOT, LAUNCH_ARGS)
    assert results.read_results(tmp_path / "out" / "results.jsonl") == []


def test_workdir_root_must_be_on_cloud_storage(sweep, tmp_path):
    with pytest.raises(InputError, match="--workdir-root"):
        run_tpu(sweep, tmp_path / "out", str(tmp_path / "runs"), LAUNCH_ARGS, dry_run=True)
