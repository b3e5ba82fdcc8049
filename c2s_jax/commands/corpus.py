"""`c2s corpus build`: a multi-task corpus of single-cell datasets as pre-tokenized
ArrayRecord shards."""

import argparse
import time

from c2s_jax.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s corpus` to the subcommands."""
    p = sub.add_parser(
        "corpus",
        help="build a multi-task training corpus (TFDS ArrayRecord shards + metadata)",
        description="Draw prompt/answer examples of the config's task mixture from its "
        "datasets, tokenize them and write ArrayRecord shards with corpus.json (genes, "
        "vocabulary, inverse fit, tokenizer, config, splits) and cells.parquet beside them. "
        "Rerunning resumes an interrupted build; the same config gives identical shards.",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    build = verbs.add_parser("build", help="build (or resume) a corpus")
    build.add_argument("--config", required=True, help="corpus config file (configs/corpus/)")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.add_argument(
        "--beam",
        action="store_true",
        help="draw examples on Apache Beam workers (local DirectRunner processes unless "
        "--beam-option runner=... says otherwise); the records are the same",
    )
    build.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Beam pipeline option, e.g. direct_num_workers=8, or runner=DataflowRunner "
        "project=P region=R temp_location=gs://B/tmp (repeat the flag for each)",
    )
    build.set_defaults(run=_run_build, takes_overrides=True)


def _run_build(args: argparse.Namespace) -> None:
    from c2s_jax.config_loading import load_config
    from c2s_jax.corpus.config import corpus_spec
    from c2s_jax.corpus.records import build_corpus

    spec = corpus_spec(load_config(args.config, args.overrides))
    began = time.perf_counter()
    if args.beam_option and not args.beam:
        raise InputError("--beam-option needs --beam")
    meta = build_corpus(
        spec, args.out, not args.no_progress, beam=args.beam, beam_options=args.beam_option
    )
    seconds = time.perf_counter() - began
    examples = sum(meta["splits"].values())
    tokenizer = meta["tokenizer"]
    print(
        f"wrote {examples} examples ({meta['splits']}) to {args.out} in {seconds:.1f} s; "
        f"tokenizer {tokenizer['path']} ({tokenizer['vocab_size']} pieces, "
        f"{'gene table' if tokenizer['pre_tokenized'] else 'text'} tokenization)"
    )
    train_total = max(meta["splits"]["train"], 1)
    for task in meta["tasks"]:
        share = meta["counts"].get(f"train/{task}", 0) / train_total
        wanted = meta["task_probabilities"][task]
        print(f"  {task:24s} {share:6.1%} of train (weight share {wanted:.1%})")
    notes = {k: v for k, v in meta["counts"].items() if k.startswith(("skipped", "dropped"))}
    truncated = meta["counts"].get("truncated to seq_len", 0)
    if truncated or notes:
        print(
            f"  truncated to seq_len: {truncated}; "
            + "; ".join(f"{k}: {v}" for k, v in notes.items())
        )
