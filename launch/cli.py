"""`python -m launch SUBCOMMAND`: the Cloud TPU launcher's command line.

    create   create the TPU VM / queued resource (recreate it if preempted), wait until ready
    setup    ship the committed tree to every worker and install it with jax[tpu]
    data     copy (or mount) gs:// data onto every worker
    run      start `c2s train|grpo` on every worker; --wait follows it to the end
    logs     follow a run's log (first worker)
    stop     SIGTERM a run on every worker (the trainer saves a checkpoint and exits)
    delete   delete the TPU
    up       create + setup + data + run: rerun it after a preemption to resume

Every subcommand takes the TPU's --name, --zone and --accelerator-type, and --dry-run,
which prints the commands, one per line, and runs none. Trailing --config.a.b=VALUE
arguments of run/up go to the trainer.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from c2s_jax.errors import InputError
from launch import gcloud, job, lifecycle, remote
from launch.execute import CommandFailedError, Runner
from launch.target import APIS, Target, make_target

REPO_ROOT = Path(__file__).resolve().parents[1]


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Option groups shared by the subcommands (argparse parent parsers)."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--name", required=True, help="TPU VM / queued resource name")
    target.add_argument("--zone", required=True, help="e.g. us-east5-a")
    target.add_argument(
        "--accelerator-type", required=True, help="slice shape: v5litepod-8, v5p-128, ..."
    )
    target.add_argument("--slices", type=int, default=1, help="slices joined over DCN")
    target.add_argument("--api", choices=APIS, default="queued", help="queued resource or VM")
    target.add_argument("--project", default="", help="Google Cloud project (default: gcloud's)")
    target.add_argument("--dry-run", action="store_true", help="print the commands, run none")

    create = argparse.ArgumentParser(add_help=False)
    create.add_argument("--runtime-version", default="", help="TPU VM image (default per type)")
    create.add_argument("--spot", action="store_true", help="Spot capacity (can be preempted)")
    create.add_argument(
        "--wait-minutes", type=float, default=60.0, help="wait this long for ACTIVE (0: no wait)"
    )

    bucket = argparse.ArgumentParser(add_help=False)
    bucket.add_argument(
        "--bucket", default="", help="gs://BUCKET[/PREFIX]: code staging and run workdirs"
    )

    setup = argparse.ArgumentParser(add_help=False)
    setup.add_argument("--ref", default="HEAD", help="git revision to ship (committed files)")
    setup.add_argument("--python", default="python3.11", help="Python on the workers")

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--src", action="append", default=[], help="gs:// folder to bring (repeatable)"
    )
    data.add_argument("--mount", action="store_true", help="mount with gcsfuse instead of copy")

    run_name = argparse.ArgumentParser(add_help=False)
    run_name.add_argument("--run-name", required=True, help="names the workdir and the log")

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--config", required=True, help="experiment file, repository-relative")
    run.add_argument("--workdir", default="", help="default: BUCKET/runs/RUN_NAME")
    run.add_argument("--verb", choices=job.VERBS, default="train", help="c2s subcommand")
    run.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the run (repeatable)"
    )
    run.add_argument(
        "--wait", action="store_true", help="follow the log until the run ends; fail if it did"
    )
    return {
        "target": target,
        "create": create,
        "bucket": bucket,
        "setup": setup,
        "data": data,
        "run_name": run_name,
        "run": run,
    }


_SUBCOMMANDS = {
    # name: (parent groups, help)
    "create": (("target", "create"), "create the TPU (recreate it if preempted)"),
    "setup": (("target", "bucket", "setup"), "install the project on every worker"),
    "data": (("target", "data"), "copy or mount gs:// data on every worker"),
    "run": (("target", "bucket", "run_name", "run"), "start c2s on every worker"),
    "logs": (("target", "run_name"), "follow a run's log"),
    "stop": (("target", "run_name"), "SIGTERM a run (it checkpoints and exits)"),
    "delete": (("target",), "delete the TPU"),
    "up": (
        ("target", "create", "bucket", "setup", "data", "run_name", "run"),
        "create + setup + data + run (rerun after a preemption to resume)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The launcher's argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="python -m launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parents = _parents()
    for name, (groups, help_text) in _SUBCOMMANDS.items():
        sub.add_parser(name, parents=[parents[g] for g in groups], help=help_text)
    return parser


def _create(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    runtime = args.runtime_version or target.accelerator.generation.runtime_version
    lifecycle.ensure_created(runner, target, runtime, args.spot, args.wait_minutes * 60)


def _code_uri(target: Target, args: argparse.Namespace) -> str:
    if not args.bucket:
        raise InputError(f"{args.command} needs --bucket gs://BUCKET: the code travels through it")
    return f"{job.gs_uri(args.bucket, '--bucket')}/launch/{target.name}/code.tar.gz"


def _job(target: Target, args: argparse.Namespace) -> job.Job:
    return job.make_job(
        target,
        args.run_name,
        args.config,
        REPO_ROOT,
        bucket=args.bucket,
        workdir=args.workdir,
        verb=args.verb,
        overrides=args.overrides,
        env=args.env,
    )


def _setup(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    code_uri = _code_uri(target, args)
    archive = str(Path(tempfile.gettempdir()) / f"c2s-code-{target.name}.tar.gz")
    runner.run(gcloud.archive_command(str(REPO_ROOT), args.ref, archive))
    runner.run(gcloud.upload_command(archive, code_uri))
    runner.run(gcloud.ssh_command(target, remote.setup_script(code_uri, args.python)))


def _data(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    for src in args.src:
        job.gs_uri(src, "--src")
        runner.run(gcloud.ssh_command(target, remote.data_script(src, args.mount)))
        print(f"{src} -> {remote.data_path(src, args.mount)} on every worker", file=sys.stderr)


def _run(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    spec = _job(target, args)
    command = job.c2s_command(spec, target)
    runner.run(
        gcloud.ssh_command(target, remote.run_script(spec.run_name, command, dict(spec.env)))
    )
    if args.wait:
        runner.run(gcloud.ssh_command(target, remote.follow_script(spec.run_name), False))
        runner.run(gcloud.ssh_command(target, remote.check_script(spec.run_name)))


def _logs(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    name = job.check_run_name(args.run_name)
    runner.run(gcloud.ssh_command(target, remote.follow_script(name), False))


def _stop(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    runner.run(gcloud.ssh_command(target, remote.stop_script(job.check_run_name(args.run_name))))


def _delete(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    runner.run(gcloud.delete_command(target))


def _up(runner: Runner, target: Target, args: argparse.Namespace) -> None:
    # Every flag is checked before anything billable is created.
    _job(target, args)
    _code_uri(target, args)
    for src in args.src:
        job.gs_uri(src, "--src")
    for step in (_create, _setup, _data, _run):
        step(runner, target, args)


_HANDLERS = {
    "create": _create,
    "setup": _setup,
    "data": _data,
    "run": _run,
    "logs": _logs,
    "stop": _stop,
    "delete": _delete,
    "up": _up,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m launch`; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.overrides = [e for e in extra if e.startswith("--config.")]
    unknown = [e for e in extra if not e.startswith("--config.")]
    if unknown or (args.overrides and args.command not in ("run", "up")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        target = make_target(
            args.name, args.zone, args.accelerator_type, args.slices, args.api, args.project
        )
        _HANDLERS[args.command](Runner(args.dry_run), target, args)
    except InputError as err:
        print(f"launch {args.command}: error: {err}", file=sys.stderr)
        return 2
    except CommandFailedError as err:
        print(f"launch {args.command}: {err}", file=sys.stderr)
        return 1
    return 0
