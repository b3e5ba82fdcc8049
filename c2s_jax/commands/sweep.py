"""`c2s sweep`: train every member of a sweep file, locally or on a Cloud TPU."""

import argparse
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s sweep` to the subcommands."""
    sweep = sub.add_parser(
        "sweep",
        help="train a sweep's members and collect DIR/results.jsonl",
        description="Expands the sweep file --config (axes of model size, tokens, learning "
        "rate, mixture, seed) into members and trains those not yet recorded in "
        "OUT/results.jsonl, one after another. Rerunning resumes. --dry-run lists the "
        "members and their overrides (with --runner tpu: the launch commands).",
    )
    sweep.add_argument("--config", required=True, help="sweep file (configs/sweeps/*.py)")
    sweep.add_argument("--out", required=True, help="results.jsonl, and local members' workdirs")
    sweep.add_argument(
        "--runner",
        choices=("local", "tpu"),
        default="local",
        help="local: train here; tpu: hand each member to the launcher (python -m launch)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="show what would run, run none")
    sweep.add_argument(
        "--workdir-root", default="", help="tpu runner: gs://BUCKET/PREFIX for members' workdirs"
    )
    sweep.add_argument(
        "--launch-args",
        default="",
        help="tpu runner: the launcher's TPU flags in one string, "
        "e.g. '--name c2s --zone us-east5-a --accelerator-type v5p-128'",
    )
    sweep.set_defaults(run=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> None:
    from c2s_jax.errors import InputError
    from c2s_jax.scaling.local import MemberFailedError, run_local
    from c2s_jax.scaling.spec import load_sweep
    from c2s_jax.scaling.tpu import run_tpu

    sweep = load_sweep(args.config)
    out = Path(args.out)
    try:
        if args.runner == "local":
            if args.workdir_root or args.launch_args:
                raise InputError("--workdir-root and --launch-args are for --runner tpu")
            run_local(sweep, out, args.dry_run)
        else:
            run_tpu(sweep, out, args.workdir_root, shlex.split(args.launch_args), args.dry_run)
    except MemberFailedError as err:
        print(f"c2s sweep: {err}", file=sys.stderr)
        raise SystemExit(1) from None
