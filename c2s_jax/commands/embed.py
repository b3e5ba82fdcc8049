"""`c2s embed`: cell embeddings from a trained model, into obsm, with a picture."""

import argparse
from pathlib import Path

from c2s_jax.errors import InputError

OBSM_KEY = "X_c2s"


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s embed` to the subcommands."""
    p = sub.add_parser(
        "embed",
        help="embed the cells of an .h5ad with a model: obsm['X_c2s'] and a UMAP/PCA PNG",
        description="Each cell becomes its cell sentence (top-K genes, the model's gene "
        "list), and its embedding is the mean of the model's last hidden states over the "
        "sentence's tokens. Writes OUTPUT.h5ad with obsm['X_c2s'] and, with --plot, a map "
        "of the embeddings colored by --color.",
    )
    p.add_argument("input", help="input .h5ad (counts or log-normalized)")
    p.add_argument("output", help="output .h5ad")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model bundle or training workdir (local, or gs:// copied to $C2S_CACHE_DIR)",
    )
    p.add_argument("--top-k", type=int, default=100, help="genes per cell (default 100)")
    p.add_argument("--seed", type=int, default=0, help="tie-break and UMAP seed")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--layer", default=None, help="read layers[NAME] instead of X")
    source.add_argument("--raw", action="store_true", help="read .raw.X instead of X")
    p.add_argument("--gene-symbols", default=None, metavar="COLUMN", help="var symbol column")
    p.add_argument("--color", default=None, metavar="COLUMN", help="obs column for the plot")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a map of the embeddings")
    p.add_argument("--method", choices=("umap", "pca"), default="umap", help="map projection")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    import numpy as np

    from c2s_jax.checkpoints.bundle import load_bundle
    from c2s_jax.inference.embeddings import CellEmbedder
    from c2s_jax.sentences.cell_sentences import cell_sentences
    from c2s_jax.sentences.expression_source import read_anndata
    from c2s_jax.storage.atomic import atomic_path, check_output_file

    check_output_file(args.output)
    if args.plot:
        check_output_file(args.plot, "--plot")
    adata = read_anndata(args.input)
    bundle = load_bundle(args.checkpoint)
    if args.color and args.color not in adata.obs:
        raise InputError(f"--color {args.color}: {args.input} has no obs column '{args.color}'")
    sentences = cell_sentences(
        adata,
        top_k=args.top_k,
        seed=args.seed,
        layer=args.layer,
        raw=args.raw,
        gene_symbols_key=args.gene_symbols,
    )
    if len(sentences) != adata.n_obs:
        raise InputError(f"{args.input}: {adata.n_obs - len(sentences)} cells express no gene")
    embedder = CellEmbedder(bundle, top_k=args.top_k, batch_size=args.batch_size)
    cells = [sentences.genes(i) for i in range(len(sentences))]
    _, unknown = embedder.token_rows(cells)
    adata.obsm[OBSM_KEY] = embedder(cells, progress=True)
    adata.uns["c2s_embedding"] = {"model": str(bundle.path), "top_k": args.top_k}
    projection = _project(adata, args.method, args.seed) if args.plot else None
    with atomic_path(Path(args.output)) as tmp:
        adata.write_h5ad(tmp)
    stored = f" and obsm['{projection}']" if projection else ""
    print(
        f"embedded {adata.n_obs} cells -> {args.output} obsm['{OBSM_KEY}']{stored} "
        f"({adata.obsm[OBSM_KEY].shape[1]} dims); genes unknown to the model: "
        f"{np.mean(unknown):.1f} per cell"
    )
    if args.plot:
        from c2s_jax.plots import plot_embedding

        labels = adata.obs[args.color].astype(str) if args.color else ["cells"] * adata.n_obs
        title = f"{args.method.upper()} of {OBSM_KEY} ({bundle.path.name})"
        plot_embedding(adata.obsm[projection], labels, title, args.plot)
        print(f"figure: {args.plot}")


def _project(adata, method: str, seed: int) -> str:
    """Stores a 2-D projection of the embeddings in obsm, as scanpy names it ('X_umap',
    with the neighbor graph in obsp/uns) or 'X_c2s_pca'; returns the obsm key."""
    if method == "pca":
        from sklearn.decomposition import PCA

        adata.obsm["X_c2s_pca"] = PCA(2, random_state=seed).fit_transform(adata.obsm[OBSM_KEY])
        return "X_c2s_pca"
    import scanpy as sc

    sc.pp.neighbors(adata, use_rep=OBSM_KEY, random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    return "X_umap"
