"""`c2s convert`: HF safetensors checkpoints <-> our orbax (Flax) checkpoints."""

import argparse
from collections.abc import Callable

from c2s_jax.errors import InputError

_DTYPES = ("float32", "bfloat16")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s convert hf2flax` and `c2s convert flax2hf` to the subcommands."""
    p = sub.add_parser(
        "convert",
        help="convert checkpoints between HF safetensors and orbax (Flax)",
        description="Gemma-2 and GPT-NeoX/Pythia checkpoints in either direction. A Flax "
        "checkpoint directory holds params/ (orbax) and model_config.json, enough to rebuild "
        "the model without HF files.",
    )
    direction = p.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    _add_direction(
        direction,
        "hf2flax",
        ("HF_DIR", "HF checkpoint directory"),
        ("OUT_DIR", "orbax checkpoint directory"),
        "Load HF_DIR (config.json + model.safetensors or sharded "
        "model-0000i-of-0000n.safetensors) and write OUT_DIR (params/ + model_config.json); "
        "with its tokenizer (tokenizer.json or tokenizer.model), OUT_DIR is a model bundle "
        "that keeps it.",
        dtype_default="float32",
        dtype_help="parameter dtype (default float32)",
        run=_run_hf2flax,
    )
    _add_direction(
        direction,
        "flax2hf",
        ("CKPT_DIR", "orbax checkpoint directory, model bundle or training workdir"),
        ("HF_DIR", "HF checkpoint directory"),
        "Restore CKPT_DIR (written by `c2s convert hf2flax` or save_flax, or a bundle that "
        "`c2s train` exported) and write HF_DIR: config.json and safetensors that "
        "transformers loads; from a bundle also its tokenizer, generation_config.json and "
        "a model card.",
        dtype_default=None,
        dtype_help="storage dtype of the tensors (default: the checkpoint's parameter dtype)",
        run=_run_flax2hf,
    )


def _add_direction(
    direction: argparse._SubParsersAction,
    name: str,
    source: tuple[str, str],
    target: tuple[str, str],
    description: str,
    *,
    dtype_default: str | None,
    dtype_help: str,
    run: Callable[[argparse.Namespace], None],
) -> None:
    p = direction.add_parser(name, help=f"{source[1]} -> {target[1]}", description=description)
    p.add_argument("source", metavar=source[0], help=source[1])
    p.add_argument("target", metavar=target[0], help=f"new (or empty) {target[1]}")
    p.add_argument("--dtype", choices=_DTYPES, default=dtype_default, help=dtype_help)
    p.set_defaults(run=run)


def _run_hf2flax(args: argparse.Namespace) -> None:
    from pathlib import Path

    from c2s_jax.checkpoints import load_hf, save_flax
    from c2s_jax.checkpoints.bundle import export_bundle
    from c2s_jax.checkpoints.hf_tokenizer import checkpoint_tokenizer
    from c2s_jax.checkpoints.safetensors_io import CheckpointReader
    from c2s_jax.storage.atomic import check_new_directory

    check_new_directory(args.target)  # before the (long) load, not after
    try:
        reader = CheckpointReader(args.source)
    except FileNotFoundError as err:
        raise InputError(f"{err}; HF_DIR must hold a HF checkpoint") from None
    tokenizer = checkpoint_tokenizer(Path(args.source), reader.config)
    model, cfg = load_hf(args.source, dtype=args.dtype)
    if tokenizer is None:
        out = save_flax(model, args.target)
    else:  # a bundle: c2s generate, score and eval take it without --tokenizer
        out = export_bundle(model, args.target, tokenizer.path, tokenizer.family, corpus={})
    kept = f" with its {tokenizer.file_name}" if tokenizer else ""
    print(f"wrote {type(cfg).__name__} ({args.dtype} parameters){kept} to {out}")


def _run_flax2hf(args: argparse.Namespace) -> None:
    from pathlib import Path

    from c2s_jax.checkpoints import export_hf, load_flax
    from c2s_jax.checkpoints.bundle import BUNDLE_FILE
    from c2s_jax.checkpoints.orbax_io import CONFIG_FILE
    from c2s_jax.storage.atomic import check_new_directory

    check_new_directory(args.target)
    source = Path(args.source)
    if (source / "config.json").exists() and not (source / CONFIG_FILE).exists():
        raise InputError(
            f"{source} is an HF checkpoint (config.json, no {CONFIG_FILE}); CKPT_DIR must come "
            "from `c2s convert hf2flax` or `c2s train`"
        )
    if (source / CONFIG_FILE).exists() and not (source / BUNDLE_FILE).exists():
        try:
            model, cfg = load_flax(source)
        except FileNotFoundError as err:
            raise InputError(f"{err}; CKPT_DIR must come from `c2s convert hf2flax`") from None
        out = export_hf(model, args.target, dtype=args.dtype)
    else:  # a bundle or a training workdir: the tokenizer and corpus facts travel too
        from c2s_jax.checkpoints.bundle import load_bundle
        from c2s_jax.checkpoints.model_card import model_card

        bundle = load_bundle(args.source)
        cfg = bundle.config
        out = export_hf(
            bundle.model,
            args.target,
            dtype=args.dtype,
            tokenizer=bundle.tokenizer,
            max_length=bundle.trained_length,
            card=model_card(bundle),
        )
    print(f"wrote {type(cfg).__name__} ({args.dtype or cfg.param_dtype} tensors) to {out}")
