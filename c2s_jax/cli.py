"""The `c2s` command: thin verbs over the library.

Each subcommand lives in its own module under `c2s_jax/commands/` with a
`register(subparsers)` function; every module there is picked up. `c2s --help` lists them.

Bad input ends with one line naming the file or field and what to do (exit status 2).
"""

import argparse
import importlib
import logging
import pkgutil
import sys
import warnings

from c2s_jax import commands
from c2s_jax.errors import InputError
from c2s_jax.local_cache import enable_compilation_cache


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `c2s` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="c2s", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Users need the message, not the library line that raised it.
    print(f"c2s: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `c2s` and `python -m c2s_jax`; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Experiment commands take ml-collections overrides: --config.a.b=value.
    overrides = [e.removeprefix("--config.") for e in extra if e.startswith("--config.")]
    unknown = [e for e in extra if not e.startswith("--config.")]
    if unknown or (overrides and not getattr(args, "takes_overrides", False)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = overrides
    warnings.showwarning = _show_warning
    enable_compilation_cache()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status = args.run(args)
    except InputError as err:
        print(f"c2s {args.command}: error: {err}", file=sys.stderr)
        return 2
    return status or 0
