"""`c2s demo`: the main job on the embedded pbmc68k data (data, corpus, training, eval)."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s demo` to the subcommands."""
    p = sub.add_parser(
        "demo",
        help="the main job on the embedded pbmc68k data: sentences, corpus, training, eval",
        description="Cell sentences and the inverse fit of pbmc68k, a multi-task corpus, a "
        "small Gemma-2 trained on it, and its evaluation report. Rerunning resumes the "
        "training. Training overrides: --config.train.steps=300.",
    )
    p.add_argument("--workdir", default="c2s_demo_out", help="where outputs go")
    p.set_defaults(run=_run_demo, takes_overrides=True)


def _run_demo(args: argparse.Namespace) -> None:
    from c2s_jax.demo import run_main_job

    run_main_job(args.workdir, tuple(args.overrides))
