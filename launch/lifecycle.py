"""Bringing a TPU up idempotently.

`create` may be rerun at any time: a live resource is kept, a missing one is created, and
one that was preempted, suspended or failed is deleted and created again. With `run`
reusing the same GCS workdir, rerunning `up` after a preemption resumes training from the
last checkpoint.
"""

import time
from collections.abc import Callable

from c2s_jax.errors import InputError
from launch import gcloud
from launch.execute import CommandFailedError, Runner
from launch.target import Target


def create_plan(
    target: Target, state: str | None, runtime_version: str, spot: bool
) -> list[list[str]]:
    """The commands that leave `target` existing, given its current `state`.

    Args:
      state: what `gcloud ... describe` reported, or None when the resource does not exist.

    Raises:
      InputError: a state in passing (e.g. DELETING): wait and rerun.
    """
    create = gcloud.create_command(target, runtime_version, spot)
    if state is None:
        return [create]
    if state in gcloud.DEAD_STATES:
        return [gcloud.delete_command(target), create]
    if state in gcloud.LIVE_STATES:
        return []
    raise InputError(
        f"--name {target.name}: the TPU is {state}; wait until it settles, or delete it "
        "(python -m launch delete ...), then rerun"
    )


def current_state(runner: Runner, target: Target) -> str | None:
    """The resource's state, or None if it does not exist (and always None in a dry run)."""
    done = runner.query(gcloud.state_command(target))
    if done is None:
        return None
    if done.returncode:
        if "NOT_FOUND" in done.stderr or "not found" in done.stderr.lower():
            return None
        raise CommandFailedError(gcloud.state_command(target), done.returncode, done.stderr)
    return done.stdout.strip() or None


def ensure_created(
    runner: Runner,
    target: Target,
    runtime_version: str,
    spot: bool,
    wait_s: float,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Creates `target` unless it is alive, then waits up to `wait_s` seconds for it to be ready.

    Raises:
      InputError: it was not ready in time (the request stays queued: rerun to keep waiting).
    """
    for command in create_plan(target, current_state(runner, target), runtime_version, spot):
        runner.run(command)
    if runner.dry_run or wait_s <= 0:
        return
    waited = 0.0
    while (state := current_state(runner, target)) not in gcloud.READY_STATES:
        if waited >= wait_s or state in gcloud.DEAD_STATES:
            raise InputError(
                f"--name {target.name}: the TPU is {state or 'missing'} after {waited:.0f} s; "
                "rerun create (it keeps a queued request) or raise --wait-minutes"
            )
        sleep(poll_s)
        waited += poll_s
