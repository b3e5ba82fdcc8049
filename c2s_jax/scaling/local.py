"""Trains a sweep's members one after another on this machine, resumably.

Each member trains in a fresh `python -m c2s_jax train` process (XLA state and memory do
not leak from one model size to the next) with its workdir at DIR/NAME and its output in
DIR/logs/NAME.log. Rerunning the same command skips members already in DIR/results.jsonl,
records a member whose training finished but whose record was not written, and resumes an
interrupted member from its newest checkpoint. Ctrl-C or SIGTERM makes the running member
save a checkpoint and stop.
"""

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from c2s_jax.run.finish import stored_result
from c2s_jax.run.workdir_lock import workdir_lock
from c2s_jax.scaling import results
from c2s_jax.scaling.spec import Member, Sweep
from c2s_jax.storage.atomic import storage_path
from c2s_jax.storage.json_lines import append_json_line


class MemberFailedError(RuntimeError):
    """A member's training exited with an error; the message names it and its log."""


def train_command(sweep: Sweep, member: Member, workdir: Path) -> list[str]:
    """The command that trains (or resumes) `member` in `workdir`."""
    return [
        sys.executable,
        "-m",
        "c2s_jax",
        "train",
        "--config",
        str(sweep.base),
        "--workdir",
        str(workdir),
        *(f"--config.{o}" for o in member.overrides),
    ]


def finished_result(workdir: Path, steps: int) -> dict[str, Any] | None:
    """workdir/result.json if training there finished all `steps` (see
    `run.finish.stored_result`) and evaluated, else None."""
    result = stored_result(storage_path(workdir), steps, exported=True)
    return result if result is not None and result["eval_loss"] is not None else None


def show_plan(sweep: Sweep, out: Path, done: set[str]) -> None:
    """Prints every member: whether it is recorded, its workdir and its own overrides."""
    print(f"{len(sweep.members)} members of {sweep.source}")
    print(f"base: {sweep.base} " + " ".join(sweep.base_overrides))
    for member in sweep.members:
        state = "done" if member.name in done else "todo"
        print(f"[{state}] {member.name} -> {out / member.name}")
        for override in member.overrides[len(sweep.base_overrides) :]:
            print(f"    {override}")


def run_local(sweep: Sweep, out: Path, dry_run: bool = False, in_process: bool = False) -> None:
    """Trains every member of `sweep` not yet in OUT/results.jsonl; appends their records.

    Each member trains in a fresh process (its own XLA state and memory, and Ctrl-C turns
    into a checkpoint), or with `in_process` in this one, which saves the start-up of a
    process per member: the better choice for many tiny members (e.g. in a notebook).

    Raises:
      MemberFailedError: a member's training failed (earlier records stay; rerun resumes).
      SystemExit: a member stopped on Ctrl-C/SIGTERM after saving a checkpoint.
    """
    results_path = out / results.RESULTS_NAME
    if dry_run:
        show_plan(sweep, out, results.recorded_names(results_path, repair=False))
        return
    # One sweep writes OUT at a time: a second would train the same members and repair
    # (cut) the results file while the first appends to it.
    with workdir_lock(out, "c2s sweep"):
        done = results.recorded_names(results_path, repair=True)
        _run_members(sweep, out, done, in_process)


def _run_members(sweep: Sweep, out: Path, done: set[str], in_process: bool) -> None:
    results_path = out / results.RESULTS_NAME
    todo = [m for m in sweep.members if m.name not in done]
    print(f"{len(sweep.members) - len(todo)} of {len(sweep.members)} members already recorded")
    for member in tqdm(todo, unit="member"):
        cfg = sweep.member_config(member)
        workdir = out / member.name
        result = finished_result(workdir, cfg.train.steps)
        if result is None and in_process:
            from c2s_jax.train.loop import train  # the trainer's imports: only this path

            result = dataclasses.asdict(train(cfg, str(workdir)))
            if result["preempted"]:
                print(f"stopped: {member.name} saved step {result['step']}; rerun to resume")
                raise SystemExit(1)
        elif result is None:
            result = _train(sweep, member, workdir, out / "logs" / f"{member.name}.log")
        record = results.member_record(member.name, member.labels, cfg, result, str(workdir))
        append_json_line(results_path, record)
        tqdm.write(
            f"{member.name}: eval loss {record['loss']:.4f}, {record['n_params']:,} "
            f"non-embedding params, {record['tokens']:,} tokens"
        )
    print(f"results: {results_path}")


def _train(sweep: Sweep, member: Member, workdir: Path, log: Path) -> dict[str, Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as log_file:
        # A session of its own: Ctrl-C reaches only this process, which turns it into the
        # SIGTERM the trainer answers with a checkpoint.
        process = subprocess.Popen(
            train_command(sweep, member, workdir),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        interrupted = []

        def forward(signum, frame):
            interrupted.append(signum)
            process.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            status = process.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if status and interrupted:
        # Stopped before the trainer could catch SIGTERM (still starting up).
        print(f"stopped: {member.name}; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(1)
    if status:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise MemberFailedError(
            f"member {member.name} failed (exit status {status}); log {log}:\n{tail}"
            "Fix the cause and rerun: recorded members are skipped."
        )
    result = json.loads((workdir / "result.json").read_text())
    if result["preempted"]:
        print(
            f"stopped: {member.name} saved step {result['step']} in {workdir}; rerun the same "
            "command to resume",
            file=sys.stderr,
        )
        raise SystemExit(1)
    return result
