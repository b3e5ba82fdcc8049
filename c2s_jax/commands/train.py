"""`c2s train`: run (or resume) an experiment config."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s train` to the subcommands."""
    train = sub.add_parser(
        "train",
        help="train (or resume) an experiment: c2s train --config FILE --workdir DIR",
        description="Trains the experiment in --config. Rerunning with the same --workdir "
        "resumes from the newest checkpoint (a finished run is left as it is). Override any "
        "field: --config.train.steps=500.",
    )
    train.add_argument("--config", required=True, help="experiment file with get_config()")
    train.add_argument(
        "--workdir",
        required=True,
        help="checkpoints, metrics and results: a local folder or gs://BUCKET/PATH",
    )
    train.add_argument(
        "--strict-restore",
        action="store_true",
        help="stop if the newest checkpoint cannot be read, instead of resuming from the "
        "next older one (which moves the unreadable one to WORKDIR/unreadable_checkpoints/)",
    )
    train.set_defaults(run=_run_train, takes_overrides=True)


def start_run(args: argparse.Namespace):
    """The experiment config of `args` (with overrides), after multi-host start-up."""
    import jax

    from c2s_jax import parallel
    from c2s_jax.config_loading import load_config

    cfg = load_config(args.config, args.overrides)
    dist = cfg.get("distributed")
    if dist is not None:
        parallel.initialize_distributed(
            dist.coordinator_address or None, dist.num_processes, dist.process_id, dist.auto
        )
    jax.config.update("jax_threefry_partitionable", True)
    return cfg


def _run_train(args: argparse.Namespace) -> None:
    from c2s_jax.train.loop import train

    cfg = start_run(args)
    result = train(cfg, args.workdir, strict_restore=args.strict_restore)
    state = "stopped by SIGTERM at" if result.preempted else "finished at"
    print(
        f"{state} step {result.step}: train loss {result.train_loss:.4f}"
        + (f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
    )
    print(f"results: {result.workdir}/result.json, metrics.jsonl, tensorboard/, checkpoints/")
