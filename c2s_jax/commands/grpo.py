"""`c2s grpo`: reinforce a trained model on verifiable rewards (GRPO)."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s grpo` to the subcommands."""
    grpo = sub.add_parser(
        "grpo",
        help="GRPO on a trained model: c2s grpo --config FILE --workdir DIR",
        description="Samples completions of corpus prompts from the model in "
        "config.init_from (a training workdir or a model bundle), scores them with the "
        "configured rewards and updates the model with GRPO. Rerunning with the same "
        "--workdir resumes from the newest checkpoint; the end exports a bundle to "
        "WORKDIR/exports/. Override any field: --config.train.steps=50.",
    )
    grpo.add_argument("--config", required=True, help="experiment file with get_config()")
    grpo.add_argument("--workdir", required=True, help="checkpoints, metrics and the export")
    grpo.add_argument(
        "--strict-restore",
        action="store_true",
        help="stop if the newest checkpoint cannot be read, instead of resuming from the "
        "next older one (which moves the unreadable one to WORKDIR/unreadable_checkpoints/)",
    )
    grpo.set_defaults(run=_run_grpo, takes_overrides=True)


def _run_grpo(args: argparse.Namespace) -> None:
    from c2s_jax.commands.train import start_run
    from c2s_jax.rl.grpo import run_grpo

    cfg = start_run(args)
    result = run_grpo(cfg, args.workdir, strict_restore=args.strict_restore)
    state = "stopped by SIGTERM at" if result.preempted else "finished at"
    held_out = ""
    if result.eval:
        held_out = f": held-out reward {result.eval['reward']:.4f}"
    print(f"{state} step {result.step}{held_out}")
    print(f"results: {result.workdir}/result.json, metrics.jsonl, tensorboard/, exports/")
