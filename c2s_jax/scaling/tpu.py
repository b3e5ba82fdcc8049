"""Runs a sweep's members on a Cloud TPU through the launcher (launch/), one after another.

The TPU must exist and carry the project (`python -m launch create` and `setup`). Each
member becomes `python -m launch run ... --wait` with its workdir at ROOT/NAME on Cloud
Storage; when it ends, its result.json is read back with `gcloud storage cat` and its
record appended to the local DIR/results.jsonl. Rerunning skips recorded members; a member
cut short (preemption) resumes from its checkpoint in ROOT/NAME.
"""

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import c2s_jax
from c2s_jax.errors import InputError
from c2s_jax.scaling import results
from c2s_jax.scaling.local import MemberFailedError
from c2s_jax.scaling.spec import Member, Sweep
from c2s_jax.storage.json_lines import append_json_line

# The launcher lives beside the package in a source checkout (pip install -e .), not in
# the wheel, on purpose: `launch setup` ships the committed tree (`git archive`) to every
# TPU worker, so a sweep on a TPU starts from a git checkout whatever installs the package.
REPO_ROOT = Path(c2s_jax.__file__).resolve().parents[1]


def launch_command(
    sweep: Sweep, member: Member, launch_args: Sequence[str], workdir: str, dry_run: bool
) -> list[str]:
    """`python -m launch run` for `member` (run from the repository root).

    `launch_args` come last, so their --config.a.b=value overrides (a worker-side data
    path, say) win over the member's own.
    """
    return [
        sys.executable,
        "-m",
        "launch",
        "run",
        "--run-name",
        member.name,
        "--workdir",
        workdir,
        "--config",
        repo_relative(sweep.base),
        "--wait",
        *(["--dry-run"] if dry_run else []),
        *(f"--config.{o}" for o in member.overrides),
        *launch_args,
    ]


def fetch_command(workdir: str) -> list[str]:
    """Prints the member's result.json from Cloud Storage."""
    return ["gcloud", "storage", "cat", f"{workdir}/result.json"]


def repo_relative(path: Path) -> str:
    """`path` relative to the repository root: how the TPU workers find it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        raise InputError(
            f"base {path}: the TPU workers only have the repository; keep the base "
            f"experiment under {REPO_ROOT}"
        ) from None


def run_tpu(
    sweep: Sweep, out: Path, workdir_root: str, launch_args: Sequence[str], dry_run: bool = False
) -> None:
    """Trains every unrecorded member of `sweep` on the TPU that `launch_args` names.

    Args:
      out: local folder of results.jsonl.
      workdir_root: gs://BUCKET/PREFIX; member NAME trains in workdir_root/NAME.
      launch_args: the launcher's TPU flags, e.g. ['--name', 'c2s', '--zone', 'us-east5-a',
        '--accelerator-type', 'v5p-128'].
      dry_run: print the commands (the launcher's, then the result fetch) and run none.

    Raises:
      MemberFailedError: the launcher or the fetch failed for a member.
    """
    if not workdir_root.startswith("gs://"):
        raise InputError(
            f"--workdir-root {workdir_root!r}: TPU members write to Cloud Storage; give "
            "gs://BUCKET/sweeps/NAME"
        )
    if not (REPO_ROOT / "launch" / "__main__.py").is_file():
        raise InputError(
            f"--runner tpu needs the launcher in {REPO_ROOT}/launch: use a source checkout "
            "installed with pip install -e ."
        )
    results_path = out / results.RESULTS_NAME
    done = results.recorded_names(results_path, repair=not dry_run)
    for member in sweep.members:
        if member.name in done:
            print(f"{member.name}: recorded, skipped", file=sys.stderr)
            continue
        workdir = f"{workdir_root.rstrip('/')}/{member.name}"
        command = launch_command(sweep, member, launch_args, workdir, dry_run)
        print(f"{member.name}: {shlex.join(command)}", file=sys.stderr, flush=True)
        status = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
        if status:
            raise MemberFailedError(
                f"member {member.name}: the launcher exited with status {status}; fix the "
                "cause and rerun (recorded members are skipped, this one resumes)"
            )
        if dry_run:
            print(shlex.join(fetch_command(workdir)), flush=True)
            continue
        result = _fetch(member, workdir)
        record = results.member_record(
            member.name, member.labels, sweep.member_config(member), result, workdir
        )
        append_json_line(results_path, record)
        print(f"{member.name}: eval loss {record['loss']:.4f}", file=sys.stderr)


def _fetch(member: Member, workdir: str) -> dict[str, Any]:
    done = subprocess.run(fetch_command(workdir), capture_output=True, text=True, check=False)
    if done.returncode:
        raise MemberFailedError(f"member {member.name}: reading its result failed: {done.stderr}")
    result = json.loads(done.stdout)
    if result["preempted"] or result["eval_loss"] is None:
        raise MemberFailedError(
            f"member {member.name} stopped at step {result['step']} without finishing "
            "(preempted?); recreate the TPU (python -m launch create ...) and rerun: it "
            "resumes from its checkpoint"
        )
    return result
