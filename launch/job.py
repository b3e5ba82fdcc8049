"""What `run` starts on every worker: the `c2s` command line of one named run.

The workdir is derived from the run name (gs://BUCKET/runs/RUN), so relaunching the same
run name after a preemption points the trainer at the same checkpoints and it resumes.
"""

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from c2s_jax.errors import InputError
from launch.target import Target

VERBS = ("train", "grpo")
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Config keys the launcher sets from the TPU's shape; a user value would contradict it.
_LAUNCHER_KEYS = ("distributed", "dcn_data")


@dataclasses.dataclass(frozen=True)
class Job:
    """One run: `c2s VERB --config CONFIG --workdir WORKDIR` plus overrides, on all workers.

    Attributes:
      run_name: names the workdir and the worker-side log (~/c2s-runs/RUN.log).
      verb: 'train' or 'grpo'.
      config: experiment file, relative to the repository root (the workers' cwd).
      workdir: checkpoints and metrics; gs:// whenever several hosts take part.
      overrides: '--config.a.b=value' arguments, in order (later ones win).
      env: extra environment variables for the run.
    """

    run_name: str
    verb: str
    config: str
    workdir: str
    overrides: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def gs_uri(value: str, flag: str) -> str:
    """`value` of `flag` checked to be gs://BUCKET[/PATH], without a trailing slash."""
    if not value.startswith("gs://") or len(value.rstrip("/")) <= len("gs://"):
        raise InputError(f"{flag} {value!r}: give a Cloud Storage URI, gs://BUCKET[/PATH]")
    return value.rstrip("/")


def check_run_name(run_name: str) -> str:
    """`run_name`, checked to be usable as a file and folder name."""
    if not _RUN_NAME.fullmatch(run_name or ""):
        raise InputError(
            f"--run-name {run_name!r}: use letters, digits, '.', '_' and '-' (it names the "
            "workdir and the log file)"
        )
    return run_name


def make_job(
    target: Target,
    run_name: str,
    config: str,
    repo_root: str | Path,
    bucket: str = "",
    workdir: str = "",
    verb: str = "train",
    overrides: Sequence[str] = (),
    env: Sequence[str] = (),
) -> Job:
    """A checked Job; bad values raise InputError naming the flag and the fix.

    Args:
      bucket: gs://BUCKET[/PREFIX]; the workdir defaults to BUCKET/runs/RUN_NAME.
      workdir: an explicit workdir instead (gs://..., or a worker-local path on one host).
      overrides: '--config.a.b=value' strings.
      env: 'KEY=VALUE' strings.
    """
    check_run_name(run_name)
    if verb not in VERBS:
        raise InputError(f"--verb {verb!r}: use one of {VERBS}")
    if Path(config).is_absolute() or not (Path(repo_root) / config).is_file():
        raise InputError(
            f"--config {config}: no such file in the repository; give a path relative to "
            "the repository root (the workers run from there), e.g. "
            "configs/train/gemma2_tiny_synthetic.py"
        )
    if not workdir:
        if not bucket:
            raise InputError(
                "no workdir: give --bucket gs://BUCKET (the run writes to "
                "gs://BUCKET/runs/RUN_NAME) or --workdir"
            )
        workdir = f"{gs_uri(bucket, '--bucket')}/runs/{run_name}"
    if target.hosts > 1 and not workdir.startswith("gs://"):
        raise InputError(
            f"--workdir {workdir}: {target.slices} x {target.accelerator.type} has "
            f"{target.hosts} hosts, which share no local disk; use --workdir "
            "gs://BUCKET/runs/RUN_NAME (or --bucket gs://BUCKET)"
        )
    for override in overrides:
        key, sep, _ = override.removeprefix("--config.").partition("=")
        if not override.startswith("--config.") or not sep:
            raise InputError(f"{override!r}: overrides look like --config.a.b=VALUE")
        if key.split(".")[0] in _LAUNCHER_KEYS:
            raise InputError(
                f"{override}: the launcher sets config.{key.split('.')[0]} from --slices and "
                "the TPU; drop this override"
            )
    pairs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise InputError(f"--env {item!r}: use KEY=VALUE, e.g. --env LIBTPU_INIT_ARGS=...")
        pairs.append((key, value))
    return Job(run_name, verb, config, workdir, tuple(overrides), tuple(pairs))


def c2s_command(job: Job, target: Target) -> list[str]:
    """The `c2s` argv every worker runs for `job` on `target`.

    jax.distributed discovers the hosts of a TPU VM by itself (`distributed.auto`); with
    several slices the mesh's data axis spans them over the data-center network
    (`dcn_data`). A multislice queued resource publishes the MEGASCALE_* variables that join
    the slices in each worker's metadata, where libtpu and jax read them.
    """
    command = ["c2s", job.verb, "--config", job.config, "--workdir", job.workdir]
    command.append("--config.distributed.auto=True")
    if target.slices > 1:
        command.append(f"--config.dcn_data={target.slices}")
    return command + list(job.overrides)
