"""`c2s generate`: cells (or any text) from a trained model."""

import argparse
import json
from pathlib import Path

from c2s_jax.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s generate` to the subcommands."""
    p = sub.add_parser(
        "generate",
        help='generate cells: c2s generate --checkpoint DIR "7 CD8+ T cells from pancreas"',
        description="Each REQUEST describes cells in free text ('7 human kidney cells', 'a "
        "fibroblast in lung after IL-6 stimulation'): a count, and cell type, tissue, "
        "organism, disease and perturbation read against the labels of the model's corpus "
        "(case-insensitive, plurals and common organism names; a word that matches nothing "
        "is named with the closest labels). Each cell gets the corpus's generation prompt "
        "and the model writes its cell sentence: exactly --num-genes known genes, each once "
        "(unless --free; a warning names cells that come back short, and why). With --raw "
        "the requests are sent verbatim and the completions printed.",
    )
    p.add_argument("requests", nargs="*", metavar="REQUEST", help="what to generate")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model bundle or training workdir (local, or gs:// copied to $C2S_CACHE_DIR)",
    )
    p.add_argument("--prompts-file", help="more requests, one per line")
    p.add_argument(
        "-n",
        "--num-samples",
        type=int,
        default=1,
        help="cells per request that names no count ('7 human kidney cells' gets 7)",
    )
    p.add_argument("--num-genes", type=int, default=100, help="genes per cell to ask for")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="default: 2 x num-genes + 8; with the gene constraint raised to what num-genes "
        "of the longest genes take, so that every cell gets its num-genes genes",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1)")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32, help="rows decoded together")
    p.add_argument("--raw", action="store_true", help="send requests as prompts verbatim")
    p.add_argument("--free", action="store_true", help="no gene-vocabulary constraint")
    p.add_argument(
        "--out-h5ad",
        help="write the cells: X log10(1+x) expression from the inverse fit, layers['rank'], "
        "obs request fields, prompt, n_genes; var in_vocabulary, n_cells",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per sample")
    p.add_argument("--tokenizer", help="SentencePiece model for a checkpoint without one")
    p.add_argument("--tokenizer-family", choices=("gemma", "pythia", "c2s"))
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut prompts longer than the model's training sequences at their end "
        "(default: refuse them)",
    )
    p.set_defaults(run=_run)


def _requests(args: argparse.Namespace) -> list[str]:
    requests = list(args.requests)
    if args.prompts_file:
        path = Path(args.prompts_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"--prompts-file {path}: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise InputError(
                f"--prompts-file {path}: not UTF-8 text (byte {err.start}); save it as UTF-8"
            ) from None
        requests += [line.strip() for line in text.splitlines() if line.strip()]
    if not requests:
        raise InputError("give at least one REQUEST or --prompts-file FILE")
    if args.num_samples < 1:
        raise InputError(f"-n/--num-samples must be >= 1, got {args.num_samples}")
    if args.num_genes < 1:
        raise InputError(f"--num-genes must be >= 1, got {args.num_genes}")
    if args.out_h5ad:
        from c2s_jax.storage.atomic import check_output_file

        check_output_file(args.out_h5ad, "--out-h5ad")
    return requests


def _run(args: argparse.Namespace) -> None:
    from c2s_jax.checkpoints.bundle import load_bundle
    from c2s_jax.inference.generation import cells_to_anndata, generate_cells
    from c2s_jax.inference.sampler import SamplingParams

    requests = _requests(args)
    bundle = load_bundle(
        args.checkpoint, tokenizer=args.tokenizer, tokenizer_family=args.tokenizer_family
    )
    try:
        params = SamplingParams(
            max_new_tokens=args.max_new_tokens or 2 * args.num_genes + 8,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
        )
    except ValueError as err:
        raise InputError(f"sampling options: {err}") from None
    constrain = not (args.free or args.raw)
    if constrain and not bundle.corpus.get("datasets"):
        raise InputError(f"{bundle.path}: no gene list to constrain to; pass --free")
    cells = generate_cells(
        bundle,
        requests,
        args.num_samples,
        params,
        num_genes=args.num_genes,
        constrain=constrain,
        raw=args.raw,
        batch_size=args.batch_size,
        truncate=args.truncate,
    )
    for request, sentence, completion in zip(
        cells.requests, cells.sentences, cells.completions, strict=True
    ):
        if args.json:
            record = {
                "request": request,
                "text": completion.text,
                "cell_sentence": sentence,
                "finish": completion.finish,
                "tokens": len(completion.tokens),
                "logprob": float(completion.logprobs.sum()),
            }
            print(json.dumps(record))
        else:
            print(f"[{request}] {completion.text if args.raw else sentence}")
    if args.out_h5ad:
        from c2s_jax.storage.atomic import atomic_path

        adata = cells_to_anndata(cells, bundle)
        with atomic_path(Path(args.out_h5ad)) as tmp:
            adata.write_h5ad(tmp)
        print(f"wrote {adata.n_obs} cells x {adata.n_vars} genes to {args.out_h5ad}")
