"""`c2s sentences`: cell sentences of single-cell inputs (h5ad, zarr, 10x, loom), written
to Parquet with metadata."""

import argparse

from c2s_jax.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s sentences` to the subcommands."""
    p = sub.add_parser(
        "sentences",
        help="write cell sentences of h5ad, zarr, 10x or loom inputs to Parquet (+ .meta.json)",
        description="Rank each cell's expressed genes by descending expression and write one "
        "row per cell: cell_name, cell_sentence and the chosen obs columns. The vocabulary, "
        "statistics and the inverse-transform fit go to OUTPUT.meta.json.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="inputs (.h5ad, .zarr, 10x .h5 or mtx folder, .loom), then OUTPUT.parquet",
    )
    p.add_argument("--top-k", type=int, default=None, help="keep the first K genes of each cell")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tie-break (default 0)")
    p.add_argument("--obs", nargs="+", default=[], metavar="COLUMN", help="obs columns to copy")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--layer", default=None, help="read layers[NAME] instead of X")
    source.add_argument("--raw", action="store_true", help="read .raw.X instead of X")
    p.add_argument(
        "--gene-symbols",
        default=None,
        metavar="COLUMN",
        help="var column holding gene symbols (e.g. when var_names are Ensembl IDs)",
    )
    # The choices are checked when the command runs: the modules that define them load
    # anndata and scipy (seconds), which `c2s --help` and the other commands do not need.
    p.add_argument(
        "--duplicates",
        default="error",
        metavar="POLICY",
        help="symbols that collide after upper-casing: error (default), sum their "
        "columns, or keep the first",
    )
    p.add_argument(
        "--sanitize-symbols",
        action="store_true",
        help="replace whitespace inside gene symbols with '_' (default: an error listing them)",
    )
    p.add_argument("--min-genes", type=int, default=0, help="drop cells with fewer genes")
    p.add_argument("--min-cells", type=int, default=0, help="drop genes seen in fewer cells")
    p.add_argument(
        "--normalize",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: normalize counts, keep normalized input as is",
    )
    p.add_argument(
        "--target-sum",
        type=float,
        default=None,
        help="normalize_total target (default: median counts per cell)",
    )
    p.add_argument("--chunk-size", type=int, default=4096, help="cells per chunk (memory bound)")
    p.add_argument(
        "--compression",
        default="zstd",
        metavar="CODEC",
        help="Parquet codec: zstd (default, smallest), lz4 (fastest to write), snappy or none",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=_run_sentences)


def _run_sentences(args: argparse.Namespace) -> None:
    from c2s_jax.sentences.cell_sentences import SentenceOptions
    from c2s_jax.sentences.gene_symbols import DUPLICATE_POLICIES
    from c2s_jax.sentences.sentence_files import COMPRESSIONS, write_sentences

    if len(args.paths) < 2:
        raise InputError("give at least one input (.h5ad, .zarr, 10x, .loom), then OUTPUT.parquet")
    for flag, value, allowed in (
        ("--duplicates", args.duplicates, DUPLICATE_POLICIES),
        ("--compression", args.compression, COMPRESSIONS),
    ):
        if value not in allowed:
            raise InputError(f"{flag} {value!r} is not one of {', '.join(allowed)}; pick one")
    *inputs, output = args.paths
    options = SentenceOptions(
        layer=args.layer,
        raw=args.raw,
        gene_symbols_key=args.gene_symbols,
        duplicates=args.duplicates,
        sanitize_symbols=args.sanitize_symbols,
        min_genes=args.min_genes,
        min_cells=args.min_cells,
        top_k=args.top_k,
        seed=args.seed,
        normalize={"auto": None, "yes": True, "no": False}[args.normalize],
        target_sum=args.target_sum,
        chunk_size=args.chunk_size,
    )
    summary = write_sentences(
        inputs, output, options, args.obs, not args.no_progress, args.compression
    )
    stats, fit = summary.meta["stats"], summary.meta["inverse_fit"]
    print(
        f"wrote {summary.n_cells} cell sentences to {summary.table} "
        f"({summary.n_cells / max(summary.seconds, 1e-9):,.0f} cells/s); "
        f"skipped {stats['n_cells_empty']} empty and {stats['n_cells_below_min_genes']} "
        f"small cells\ninverse fit: expression = {fit['intercept']:.4f} {fit['slope']:+.4f} * "
        f"log10(1 + rank); R2 {fit['r2']:.3f}, Pearson {fit['pearson']:.3f}, Spearman "
        f"{fit['spearman']:.3f} -> {summary.metadata}"
    )
