"""`c2s scaling fit`: power laws fitted to a sweep's results.jsonl, with bootstrap CIs."""

import argparse
import json

from c2s_jax.errors import InputError

_LEVEL = 0.95


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `c2s scaling` (with its verb `fit`) to the subcommands."""
    scaling = sub.add_parser(
        "scaling",
        help="scaling laws from a sweep: c2s scaling fit RESULTS.jsonl",
        description="Scaling laws fitted to the results.jsonl that a sweep writes.",
    )
    verbs = scaling.add_subparsers(dest="verb", required=True)
    fit = verbs.add_parser(
        "fit",
        help="fit L(N) = E + A*N^-alpha (or L(N, D) with --two-variable)",
        description="Fits L(N) = E + A*N^-alpha, or L(N, D) = E + A*N^-alpha + B*D^-beta with "
        "--two-variable (N: non-embedding parameters, D: training tokens), by a Huber loss on "
        "log L (Hoffmann et al. 2022), with bootstrap confidence intervals. Prints a table, "
        "or one JSON object with --json.",
    )
    fit.add_argument(
        "results",
        help="a sweep's results.jsonl, or any file of JSON lines with n_params, tokens, loss",
    )
    fit.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    fit.add_argument(
        "--two-variable", action="store_true", help="fit L(N, D) over parameters and tokens"
    )
    fit.add_argument("--task", help="fit this task's loss (a key of task_loss) instead of loss")
    fit.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="resamples for the 95%% confidence intervals (0: none; default 200)",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    fit.add_argument(
        "--plot",
        metavar="OUT.png",
        help="write loss vs parameters and vs FLOPs with the fits and their bands; for L(N) "
        "this also fits L(C) = E + A*C^-alpha over training FLOPs C for the compute panel",
    )
    fit.add_argument(
        "--budget",
        type=float,
        metavar="FLOPS",
        help="with --two-variable: the compute-optimal N and D for this many training FLOPs "
        "(assuming C = 6 N D)",
    )
    fit.set_defaults(run=_run_fit)


def _run_fit(args: argparse.Namespace) -> None:
    from c2s_jax.scaling import law

    if args.budget is not None and not args.two_variable:
        raise InputError("--budget needs --two-variable: the allocation trades N against D")
    if args.budget is not None and args.budget <= 0:
        raise InputError(f"--budget must be a positive number of FLOPs, got {args.budget}")
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    points = law.read_results(args.results)
    losses = law.target_losses(points, args.task)
    tokens = [p.tokens for p in points] if args.two_variable else None
    fit = law.fit_scaling_law(
        [p.n_params for p in points],
        losses,
        tokens,
        bootstrap=args.bootstrap,
        seed=args.seed,
        where=args.results,
    )
    report = {
        **{name: fit.values[name] for name in fit.names},
        "law": "E + A*N^-alpha + B*D^-beta" if fit.two_variable else "E + A*N^-alpha",
        "n_points": fit.n_points,
        "loss": f"task_loss.{args.task}" if args.task else "loss",
        "ci": _ci(fit),
        "ci_undefined": fit.no_intervals,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "huber_objective": fit.objective,
    }
    if args.budget is not None:
        allocation = law.compute_optimal(fit, args.budget, _LEVEL)
        report["compute_optimal"] = {
            "budget_flops": allocation.budget_flops,
            "n_params": allocation.n_params,
            "tokens": allocation.tokens,
            "loss": allocation.loss,
            "ci": {k: list(v) for k, v in allocation.ci.items()},
        }
    if args.plot:
        from c2s_jax.scaling.plot import plot_scaling

        compute_fit = None
        if not fit.two_variable:
            compute_fit = law.fit_scaling_law(
                [p.flops for p in points],
                losses,
                bootstrap=args.bootstrap,
                seed=args.seed,
                where=args.results,
                variable="flops",
            )
            report["compute_law"] = {
                "law": "E + A*C^-alpha",
                **{name: compute_fit.values[name] for name in compute_fit.names},
                "ci": _ci(compute_fit),
            }
        plot_scaling(
            points,
            losses,
            fit,
            args.plot,
            compute_fit=compute_fit,
            level=_LEVEL,
            title=f"{args.results} ({report['loss']})",
        )
        report["plot"] = args.plot
    print(json.dumps(report) if args.json else _table(report, args.results))


def _ci(fit) -> dict | None:
    intervals = fit.ci(_LEVEL)
    if not intervals:
        return None
    return {"level": _LEVEL, **{name: list(bounds) for name, bounds in intervals.items()}}


def _table(report: dict, path: str) -> str:
    """The readable form of `report`: constants with their intervals."""
    lines = [
        f"L = {report['law']}  fitted to {report['n_points']} points of {path} "
        f"({report['loss']}; N = non-embedding parameters"
        + (", D = training tokens)" if "B" in report else ")"),
        "Huber loss (delta 1e-3) on log L, L-BFGS-B from a grid of starts; "
        + (
            f"{_LEVEL:.0%} intervals from {report['bootstrap']} bootstrap resamples "
            f"(seed {report['seed']})"
            if report["ci"]
            else f"no intervals: {report['ci_undefined'] or 'no bootstrap (--bootstrap 0)'}"
        ),
        "",
        _rows(report, ("E", "A", "alpha", "B", "beta")),
    ]
    if "compute_law" in report:
        law = report["compute_law"]
        lines += ["", "For the plot, L(C) = E + A*C^-alpha over training FLOPs C:"]
        lines.append(_rows(law, ("E", "A", "alpha")))
    if "compute_optimal" in report:
        opt = report["compute_optimal"]
        lines += [
            "",
            f"Compute-optimal allocation of C = {opt['budget_flops']:.3g} FLOPs (C = 6 N D):",
            _rows(opt, ("n_params", "tokens", "loss")),
        ]
    if "plot" in report:
        lines += ["", f"plot: {report['plot']}"]
    return "\n".join(lines)


def _rows(values: dict, names: tuple[str, ...]) -> str:
    ci = values.get("ci") or {}
    header = f"  {'':10s} {'value':>12s}" + (f"   {_LEVEL:.0%} interval" if ci else "")
    rows = [header]
    for name in names:
        if name not in values:
            continue
        row = f"  {name:10s} {values[name]:12.4g}"
        if name in ci:
            low, high = ci[name]
            row += f"   [{low:.4g}, {high:.4g}]"
        rows.append(row)
    return "\n".join(rows)
