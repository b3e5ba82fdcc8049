"""`c2s annotate`: cell types of an .h5ad predicted by a C2S model, written to obs."""

import argparse

from c2s_jax.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s annotate` to the subcommands."""
    p = sub.add_parser(
        "annotate",
        help="predict cell types with a C2S model: c2s annotate IN.h5ad --checkpoint M --out O",
        description="Writes each cell's cell sentence into a cell type prompt (our corpus's "
        "wording, or cell2sentence's with --prompt-style cell2sentence for the released C2S "
        "models), asks the model (greedy generation, or likelihood ranking of --labels) and "
        "writes OUT.h5ad: the input with obs[KEY] (prediction), obs[KEY_score] "
        "(log-likelihood of the answer) and obs[KEY_prompt_tokens]. MODEL is a bundle, a "
        "training workdir, an HF checkpoint folder with its tokenizer, or gs://.",
    )
    p.add_argument("input", help="input .h5ad (counts or log-normalized)")
    p.add_argument("--checkpoint", required=True, metavar="MODEL", help="the model")
    p.add_argument("--out", required=True, help="output .h5ad")
    p.add_argument("--obs-key", default="c2s_cell_type", help="obs column for the predictions")
    p.add_argument("--prompt-style", choices=("c2s", "cell2sentence"), default="c2s")
    p.add_argument("--organism", default="Homo sapiens", help="the organism the prompt names")
    p.add_argument("--labels", nargs="+", default=(), help="rank these labels by likelihood")
    p.add_argument("--top-k", type=int, default=200, help="genes per cell sentence")
    p.add_argument("--max-new-tokens", type=int, default=24, help="longest generated answer")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="tie-breaks and the wording draw")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--layer", default=None, help="read layers[NAME] instead of X")
    source.add_argument("--raw", action="store_true", help="read .raw.X instead of X")
    p.add_argument("--gene-symbols", default=None, metavar="COLUMN", help="var symbol column")
    p.add_argument("--sanitize-symbols", action="store_true", help="'_' for whitespace")
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut prompts longer than the model's training sequences (default: refuse them)",
    )
    p.add_argument(
        "--tokenizer", default=None, help="a tokenizer file, for a model without its own"
    )
    p.add_argument("--tokenizer-family", choices=("gemma", "pythia", "c2s"))
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    from c2s_jax.checkpoints.bundle import load_bundle
    from c2s_jax.inference.annotate import AnnotationOptions, annotate_cells, write_annotations
    from c2s_jax.sentences.expression_source import read_anndata
    from c2s_jax.storage.atomic import check_output_file

    if not args.out.endswith(".h5ad"):
        raise InputError(f"--out {args.out}: must be an .h5ad file")
    check_output_file(args.out, "--out")
    options = AnnotationOptions(
        top_k=args.top_k,
        prompt_style=args.prompt_style,
        organism=args.organism,
        labels=tuple(args.labels),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        truncate=args.truncate,
        seed=args.seed,
        sentence_options=dict(
            layer=args.layer,
            raw=args.raw,
            gene_symbols_key=args.gene_symbols,
            sanitize_symbols=args.sanitize_symbols,
        ),
    )
    adata = read_anndata(args.input)
    bundle = load_bundle(
        args.checkpoint, tokenizer=args.tokenizer, tokenizer_family=args.tokenizer_family
    )
    table = annotate_cells(adata, bundle, options, name=args.input)
    write_annotations(adata, args.out, table, args.obs_key)
    counts = table["prediction"].value_counts()
    print(f"annotated {len(table)} of {adata.n_obs} cells -> {args.out} obs['{args.obs_key}']")
    for label, n in counts.head(10).items():
        print(f"  {n:6d}  {label}")
