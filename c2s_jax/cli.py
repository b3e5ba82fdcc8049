"""The `c2s` command: thin verbs over the library.

Each subcommand lives in its own module under `c2s_jax/commands/` with a
`register(subparsers)` function; every module there is picked up. `c2s --help` lists them.

Bad input, and failures that are not bugs (a full disk, a damaged file, an accelerator out
of memory), end with one line naming the file or field and what to do (exit status 2);
--debug or C2S_DEBUG=1 shows the traceback instead.
"""

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import sys
import warnings
from collections.abc import Iterator

from c2s_jax import commands
from c2s_jax.failures import describe
from c2s_jax.storage.cache import enable_compilation_cache

DEBUG_ENV = "C2S_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `c2s` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="c2s", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a failure instead of one line (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Users need the message, not the library line that raised it.
    print(f"c2s: warning: {message}", file=sys.stderr)


def _one_line_records(record: logging.LogRecord) -> bool:
    # Background threads of libraries (orbax's writers) log failures with tracebacks; the
    # failure reaches the command, which reports it, so the log keeps one line of each.
    if record.exc_info or "\n" in record.getMessage():
        record.msg, record.args = record.getMessage().strip().split("\n", 1)[0], None
        record.exc_info, record.exc_text = None, None
    return True


@contextlib.contextmanager
def _quiet_background_failures() -> Iterator[None]:
    """For the length of one command: library log records keep one line, and the echoes
    of a failed asynchronous write are dropped. Both are put back afterwards, so a caller
    of `main` (a test, a notebook) keeps its own logging and hooks."""
    previous_hook = sys.unraisablehook

    def drop_closed_loop_echoes(unraisable) -> None:
        # After an asynchronous checkpoint write fails, TensorStore keeps calling back into
        # orbax's closed event loop: hundreds of "Event loop is closed" tracebacks that
        # hide the failure itself, which is reported once.
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        previous_hook(unraisable)

    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(_one_line_records)
    sys.unraisablehook = drop_closed_loop_echoes
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for handler in handlers:
            handler.removeFilter(_one_line_records)


def main(argv: list[str] | None = None, exit_at_failure: bool = False) -> int:
    """Runs `c2s ARGV` and returns the exit status.

    Args:
      argv: the arguments (default: the process's).
      exit_at_failure: end the process right after a failure's line (the console entry
        points), so background writers that the failure broke (orbax, TensorStore) add no
        tracebacks of their own at interpreter exit.
    """
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
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    logging.basicConfig(
        level=logging.INFO if args.verbose or debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet = contextlib.nullcontext() if debug else _quiet_background_failures()
    try:
        with quiet:
            status = args.run(args)
    except KeyboardInterrupt:
        print(f"c2s {args.command}: interrupted", file=sys.stderr)
        status = 130
    except Exception as err:
        message = None if debug else describe(err)
        if message is None:
            raise
        print(f"c2s {args.command}: error: {message}", file=sys.stderr)
        status = 2
    else:
        return status or 0
    if exit_at_failure:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def console() -> None:
    """The `c2s` console script and `python -m c2s_jax`."""
    raise SystemExit(main(exit_at_failure=True))
