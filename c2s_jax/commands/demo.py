"""`c2s demo`: the data stage end to end on the embedded pbmc68k data."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s demo` to the subcommands."""
    p = sub.add_parser("demo", help="run the data stage end to end on the embedded pbmc68k data")
    p.add_argument("--workdir", default="c2s_demo_out", help="where outputs go")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    from c2s_jax.demo import run_demo

    run_demo(args.workdir)
