"""`c2s plan --compile`: what a step of an experiment needs per chip, before anything runs.

The trainer's (GRPO's, the sampler's) own step compiled by the TPU compiler for the slice the
config names (or --topology), on this machine, with no TPU attached: the compiler's own
memory analysis, compiled FLOPs and collectives. Compiling is what `c2s plan` does; the
`--compile` flag spells it out in scripts and launch notes.
"""

import argparse
import json
import sys

from c2s_jax.errors import InputError

DOES_NOT_FIT = 1


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s plan` to the subcommands."""
    plan = sub.add_parser(
        "plan",
        help="per-chip memory and FLOPs of an experiment's step on a TPU slice, before launch",
        description="Builds the step (training, GRPO update or sampler) over abstract "
        "arrays, compiles it with the TPU compiler for the slice in config.target (or "
        "--topology), and reports the compiler's per-chip memory against HBM, compiled vs "
        "model FLOPs and the collectives; exits 1 when it does not fit. Needs libtpu "
        "(pip install 'libtpu==0.0.42.*'), not a TPU.",
    )
    plan.add_argument("--config", required=True, help="experiment file with get_config()")
    plan.add_argument(
        "--compile",
        action="store_true",
        help="compile the step with the TPU compiler (what plan does; optional)",
    )
    plan.add_argument(
        "--topology",
        help="slice to compile for: an accelerator type (v5p-128, v5litepod-256, v6e-64) or a "
        "topology (v5p:4x4x4); default config.target.slice",
    )
    plan.add_argument(
        "--slices", type=int, help="slices over the data-center network (default config.dcn_data)"
    )
    plan.add_argument(
        "--step",
        choices=("train", "grpo", "decode"),
        help="which step: train (training configs' default), grpo (GRPO configs' default: "
        "the policy update) or decode (the sampler)",
    )
    plan.add_argument(
        "--prompt-tokens", type=int, default=256, help="prompt length for decode and grpo"
    )
    plan.add_argument(
        "--new-tokens",
        type=int,
        default=None,
        help="tokens generated per prompt for decode (default 256; GRPO: sampling.max_new_tokens)",
    )
    plan.add_argument(
        "--rows",
        type=int,
        default=None,
        help="prompts decoded at once (default: data.batch_size; GRPO: prompts x group size)",
    )
    plan.add_argument(
        "--cost-model",
        action="store_true",
        help="also estimate the train step's time with XLA's cost model (two more compiles "
        "of a few layers; an estimate, not a measurement)",
    )
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(run=_run_plan, takes_overrides=True)


def _run_plan(args: argparse.Namespace) -> int:
    from c2s_jax.config_loading import load_config
    from c2s_jax.plan.compiled import plan_compiled

    cfg = load_config(args.config, args.overrides)

    is_grpo = "grpo" in cfg
    step = args.step or ("grpo" if is_grpo else "train")
    if (step == "grpo") != is_grpo and step != "decode":
        kind = "a GRPO" if is_grpo else "a training"
        raise InputError(f"{args.config} is {kind} config: --step {step} does not apply to it")
    target = cfg.get("target")
    topology = args.topology or (target.slice if target is not None else None)
    if not topology:
        raise InputError(
            f"{args.config} names no config.target.slice: pass --topology, e.g. v5p-128"
        )
    slices = args.slices or cfg.get("dcn_data", 1)
    model_cfg = None
    if is_grpo:
        from c2s_jax.checkpoints.bundle import bundle_model_config

        if not cfg.init_from:
            raise InputError("config.init_from is empty: name the bundle whose model to plan for")
        model_cfg = bundle_model_config(cfg.init_from)
    new_tokens = args.new_tokens or (cfg.sampling.max_new_tokens if is_grpo else 256)
    plan = plan_compiled(
        cfg,
        topology=topology,
        slices=slices,
        step=step,
        model_cfg=model_cfg,
        prompt_tokens=args.prompt_tokens,
        new_tokens=new_tokens,
        rows=args.rows,
        cost_model=args.cost_model,
    )
    print(json.dumps(plan.as_json()) if args.json else plan.table())
    if plan.fits:
        return 0
    print(
        f"c2s plan: the {step} step of {args.config} needs {plan.total_gib:.1f} GiB per chip on "
        f"{plan.topology}, more than {plan.hbm_gib:g} GiB x 95%: use more chips, fewer rows "
        "per chip (config.data.batch_size, config.train.microbatches), or remat 'full'",
        file=sys.stderr,
    )
    return DOES_NOT_FIT
