"""`c2s tokenizer train`: a gene-aware SentencePiece tokenizer from a corpus config's text."""

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s tokenizer` to the subcommands."""
    p = sub.add_parser(
        "tokenizer",
        help="train a SentencePiece tokenizer with every gene symbol as one piece",
        description="Train on the text of a corpus config's examples, with each gene symbol "
        "(after a space) as exactly one piece, and report tokens per gene and per example "
        "against a generic tokenizer of the same size trained on the same text.",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train a tokenizer")
    train.add_argument("--config", required=True, help="corpus config file (configs/corpus/)")
    train.add_argument("--out", required=True, help="the .model file to write")
    train.add_argument(
        "--vocab-size", type=int, default=None, help="learned pieces (default: config)"
    )
    train.add_argument(
        "--model-type", choices=("bpe", "unigram"), default="bpe", help="SentencePiece model type"
    )
    train.set_defaults(run=_run_train, takes_overrides=True)


def _run_train(args: argparse.Namespace) -> None:
    from c2s_jax.config_loading import load_config
    from c2s_jax.corpus.cells import load_dataset
    from c2s_jax.corpus.config import corpus_spec
    from c2s_jax.corpus.prompts.formatter import Templates
    from c2s_jax.corpus.records import corpus_texts, gene_symbols
    from c2s_jax.corpus.tasks import ExampleFactory
    from c2s_jax.corpus.tokenizer import Tokenizer, token_efficiency, train_tokenizer

    spec = corpus_spec(load_config(args.config, args.overrides))
    datasets = [
        load_dataset(d, spec.split, spec.seed, spec.spatial_neighbors) for d in spec.datasets
    ]
    factory = ExampleFactory(spec, datasets, Templates.load())
    texts = corpus_texts(factory, spec.tokenizer.training_examples)
    symbols = gene_symbols(datasets)
    vocab_size = args.vocab_size or spec.tokenizer.vocab_size
    out = Path(args.out)
    train_tokenizer(texts, out, vocab_size, symbols, args.model_type)
    generic_path = out.with_name(f"{out.stem}.generic{out.suffix}")
    train_tokenizer(texts, generic_path, vocab_size + len(symbols), (), args.model_type)
    rows = []
    for name, path in (("gene-aware", out), ("generic", generic_path)):
        tokenizer = Tokenizer(path, spec.tokenizer.family)
        rows.append((name, path, tokenizer.vocab_size, token_efficiency(tokenizer, texts, symbols)))
    print(f"trained on {len(texts)} example texts, {len(symbols)} gene symbols")
    for name, path, size, eff in rows:
        print(
            f"  {name:10s} {path} ({size} pieces): {eff['tokens_per_gene']:.2f} tokens/gene, "
            f"{eff['tokens_per_example']:.0f} tokens/example"
        )
