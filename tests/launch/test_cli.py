"""The launcher's commands for real TPU shapes, its dry run, resume flow and input errors."""

import shlex
import subprocess

import pytest

from launch import cli

TINY = "configs/train/gemma2_tiny_synthetic.py"
TARGET = ["--name", "c2s", "--zone", "z", "--accelerator-type", "v5p-8"]


@pytest.fixture
def no_subprocess(monkeypatch):
    """Any attempt to run a command fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a command ran during a dry run: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def dry_run(capsys, *argv: str) -> list[list[str]]:
    """The commands `python -m launch ARGV --dry-run` prints, each split back into argv."""
    assert cli.main([*argv, "--dry-run"]) == 0, capsys.readouterr().err
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def remote_script(command: list[str]) -> str:
    (script,) = [a.removeprefix("--command=") for a in command if a.startswith("--command=")]
    return script


def up(name, accelerator, *extra):
    return [
        "up",
        "--name",
        name,
        "--zone",
        "us-west4-a",
        "--accelerator-type",
        accelerator,
        "--bucket",
        "gs://c2s-bucket",
        "--run-name",
        "exp1",
        "--config",
        TINY,
        *extra,
    ]


def test_single_host_v5e_8(capsys, no_subprocess):
    commands = dry_run(capsys, *up("c2s-v5e", "v5litepod-8"))
    describe, create, archive, upload, setup, run = commands
    assert describe[:5] == ["gcloud", "compute", "tpus", "queued-resources", "describe"]
    assert create[4:6] == ["create", "c2s-v5e"]
    assert {"--accelerator-type=v5litepod-8", "--node-id=c2s-v5e", "--zone=us-west4-a"} <= set(
        create
    )
    assert "--runtime-version=v2-alpha-tpuv5-lite" in create and "--spot" not in create
    assert archive[:4] == ["git", "-C", str(cli.REPO_ROOT), "archive"] and archive[-1] == "HEAD"
    assert upload[-1] == "gs://c2s-bucket/launch/c2s-v5e/code.tar.gz"
    for ssh in (setup, run):
        assert ssh[4] == "ssh" and {"--worker=all", "--node=all"} <= set(ssh)
    assert 'pip" install -q -r requirements.txt -e . "jax[tpu]==' in remote_script(setup)
    script = remote_script(run)
    assert f"c2s train --config {TINY} --workdir gs://c2s-bucket/runs/exp1" in script
    assert "--config.distributed.auto=True" in script and "dcn_data" not in script


def test_v5p_128_spot_runs_on_16_hosts_with_a_gcs_workdir(capsys, no_subprocess):
    commands = dry_run(
        capsys, *up("c2s-v5p", "v5p-128", "--spot", "--wait", "--config.train.steps=500")
    )
    create = commands[1]
    assert {"--accelerator-type=v5p-128", "--spot", "--runtime-version=v2-alpha-tpuv5"} <= set(
        create
    )
    run, follow, check = commands[-3:]
    assert "--config.train.steps=500" in remote_script(run)
    assert "gs://c2s-bucket/runs/exp1" in remote_script(run)
    # --wait follows the first worker's log, then checks every worker's exit status.
    assert {"--node=0", "--worker=0"} <= set(follow) and "tail" in remote_script(follow)
    assert {"--node=all", "--worker=all"} <= set(check) and '"$R.rc"' in remote_script(check)


def test_two_v5e_256_slices_join_over_dcn(capsys, no_subprocess):
    commands = dry_run(capsys, *up("c2s-ms", "v5e-256", "--slices", "2", "--spot"))
    create = commands[1]
    assert {"--accelerator-type=v5litepod-256", "--node-count=2", "--node-prefix=c2s-ms"} <= set(
        create
    )
    assert not any(a.startswith("--node-id") for a in create)
    run = commands[-1]
    assert {"--node=all", "--worker=all"} <= set(run)
    assert "--config.dcn_data=2" in remote_script(run)
    assert "--config.distributed.auto=True" in remote_script(run)


def test_tpu_vm_api_and_teardown(capsys, no_subprocess):
    target = ["--name", "c2s-vm", "--zone", "us-central2-b", "--accelerator-type", "v4-8"]
    describe, create = dry_run(capsys, "create", *target, "--api", "vm")
    assert describe[3:5] == ["tpu-vm", "describe"] and describe[-1] == "--format=value(state)"
    assert create[3:6] == ["tpu-vm", "create", "c2s-vm"]
    assert "--version=tpu-ubuntu2204-base" in create
    ((*delete,),) = dry_run(capsys, "delete", *target, "--api", "vm")
    assert delete[3:6] == ["tpu-vm", "delete", "c2s-vm"] and "--quiet" in delete
    ((*delete,),) = dry_run(capsys, "delete", *target)
    assert delete[3:6] == ["queued-resources", "delete", "c2s-vm"] and "--force" in delete
    ((*stop,),) = dry_run(capsys, "stop", *target, "--run-name", "exp1")
    assert "kill -TERM" in remote_script(stop) and "--worker=all" in stop


def test_data_copies_or_mounts_on_every_worker(capsys, no_subprocess):
    target = ["--name", "c2s", "--zone", "z", "--accelerator-type", "v5p-16"]
    src = "gs://c2s-bucket/corpora/pbmc68k"
    ((*copy,),) = dry_run(capsys, "data", *target, "--src", src)
    assert f"rsync --recursive {src} /mnt/c2s-data/pbmc68k" in remote_script(copy)
    ((*mount,),) = dry_run(capsys, "data", *target, "--src", src, "--mount")
    assert "gcsfuse --implicit-dirs c2s-bucket /mnt/gcs/c2s-bucket" in remote_script(mount)


class FakeGcloud:
    """Stands in for subprocess.run: answers `describe` with given states, records the rest."""

    def __init__(self, states):
        self.states = list(states)
        self.calls = []

    def __call__(self, argv, capture_output=False, text=True, check=False):
        self.calls.append(argv)
        if "describe" in argv:
            state = self.states.pop(0)
            if state is None:
                return subprocess.CompletedProcess(argv, 1, "", "ERROR: NOT_FOUND: no such QR")
            return subprocess.CompletedProcess(argv, 0, f"{state}\n", "")
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.mark.parametrize(
    ("first_state", "recreated", "created"),
    [("SUSPENDED", True, True), ("PREEMPTED", True, True), ("FAILED", True, True),
     (None, False, True), ("ACTIVE", False, False)],
)  # fmt: skip
def test_relaunch_recreates_a_preempted_tpu_and_reuses_the_workdir(
    monkeypatch, capsys, first_state, recreated, created
):
    fake = FakeGcloud([first_state, "ACTIVE"])
    monkeypatch.setattr(subprocess, "run", fake)
    assert cli.main(up("c2s-v5p", "v5p-128", "--spot")) == 0, capsys.readouterr().err
    verbs = [c[4] if c[0] == "gcloud" and c[1] == "compute" else c[1] for c in fake.calls]
    expected = ["describe"] + ["delete"] * recreated + ["create"] * created
    expected += ["describe", "-C", "storage", "ssh", "ssh"]
    assert verbs == expected
    # The same run name means the same workdir: the trainer resumes its checkpoints there.
    assert "--workdir gs://c2s-bucket/runs/exp1" in remote_script(fake.calls[-1])


def test_waiting_for_a_queued_tpu_polls_until_active(monkeypatch):
    from launch import lifecycle
    from launch.execute import Runner
    from launch.target import make_target

    fake = FakeGcloud([None, "WAITING_FOR_RESOURCES", "PROVISIONING", "ACTIVE"])
    monkeypatch.setattr(subprocess, "run", fake)
    slept = []
    target = make_target("c2s", "z", "v5litepod-8")
    lifecycle.ensure_created(Runner(False), target, "img", True, 600, 30, slept.append)
    assert slept == [30, 30]
    fake = FakeGcloud([None] + ["WAITING_FOR_RESOURCES"] * 5)
    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(ValueError, match="rerun create"):
        lifecycle.ensure_created(Runner(False), target, "img", True, 60, 30, slept.append)


@pytest.mark.parametrize(
    ("argv", "flag", "advice"),
    [
        (up("c2s", "v9-8"), "--accelerator-type", "e.g. v5litepod-8"),
        (up("c2s", "v5p-128", "--slices", "0"), "--slices", "at least 1"),
        (up("c2s", "v5e-256", "--slices", "2", "--api", "vm"), "--slices", "--api queued"),
        (up("c2s", "v5p-128", "--workdir", "/home/me/run"), "--workdir", "gs://BUCKET"),
        (up("c2s", "v5p-128", "--bucket", "my-bucket"), "--bucket", "gs://BUCKET"),
        (up("C2S_TPU", "v5p-8"), "--name", "lowercase"),
        (up("c2s", "v5p-8", "--run-name", "a b"), "--run-name", "letters, digits"),
        (up("c2s", "v5p-8", "--config", "configs/nope.py"), "--config", "relative to"),
        (up("c2s", "v5p-8", "--env", "NOEQUALS"), "--env", "KEY=VALUE"),
        (up("c2s", "v5e-256", "--slices", "2", "--config.dcn_data=4"), "dcn_data", "drop"),
        (up("c2s", "v5p-8", "--src", "/data/corpus"), "--src", "gs://BUCKET"),
        (["logs", *TARGET, "--run-name", "x;rm -rf"], "--run-name", "letters, digits"),
    ],
)
def test_bad_input_names_the_flag_and_what_to_do(capsys, no_subprocess, argv, flag, advice):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and advice in err


def test_a_single_host_may_use_a_local_workdir(capsys, no_subprocess):
    commands = dry_run(capsys, *up("c2s", "v5litepod-8", "--workdir", "runs/exp1"))
    assert "--workdir runs/exp1" in remote_script(commands[-1])
