"""`c2s eval`: evaluate a trained model end to end and write a report."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s eval` to the subcommands."""
    p = sub.add_parser(
        "eval",
        help="evaluate a model: c2s eval --config configs/eval/pbmc68k.py --out DIR",
        description="Annotation accuracy and macro-F1 (with logistic regression, kNN and "
        "majority baselines), question answering per question kind (beside chance), "
        "conditioned generation (scFID, MMD, kNN accuracy, gene validity, mean-expression "
        "correlation, with a real-vs-real noise floor) and perturbation response (with "
        "baselines) on the held-out cells of the model's corpus; every accuracy with its "
        "95% interval. Writes OUT/report.md, metrics.json, PNG figures and "
        "predictions.h5ad (per-cell truth and predictions, scanpy conventions). "
        "Override any field: --config.checkpoint=DIR.",
    )
    p.add_argument("--config", required=True, help="evaluation file with get_config()")
    p.add_argument("--out", required=True, help="report directory")
    p.set_defaults(run=_run, takes_overrides=True)


def _run(args: argparse.Namespace) -> None:
    from c2s_jax.config_loading import load_config
    from c2s_jax.evaluate.run import run_evaluation, summary_lines

    cfg = load_config(args.config, args.overrides)
    report, results = run_evaluation(cfg, args.out)
    for line in summary_lines(results):
        print(line)
    print(f"report: {report}")
