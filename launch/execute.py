"""Runs commands, or with --dry-run only prints them (one per line, shell-quoted)."""

import dataclasses
import shlex
import subprocess
import sys
from collections.abc import Sequence

from c2s_jax.errors import InputError


class CommandFailedError(RuntimeError):
    """A command exited with a non-zero status; the message names it."""

    def __init__(self, argv: Sequence[str], returncode: int, detail: str = ""):
        self.returncode = returncode
        text = f"exit status {returncode} from: {shlex.join(argv)}"
        super().__init__(text + (f"\n{detail.strip()}" if detail.strip() else ""))


@dataclasses.dataclass
class Runner:
    """Runs argv lists one after another; with `dry_run` it prints them and runs none.

    Each command is printed (shell-quoted) before it runs, to stdout in a dry run and to
    stderr otherwise, so a dry run's stdout is exactly the list of commands.
    """

    dry_run: bool

    def _show(self, argv: Sequence[str]) -> None:
        line = shlex.join(argv)
        if self.dry_run:
            print(line, flush=True)
        else:
            print(f"+ {line}", file=sys.stderr, flush=True)

    def run(self, argv: Sequence[str]) -> None:
        """Runs `argv` with the terminal attached; raises CommandFailedError on failure."""
        self._show(argv)
        if self.dry_run:
            return
        done = _call(argv, capture=False)
        if done.returncode:
            raise CommandFailedError(argv, done.returncode)

    def query(self, argv: Sequence[str]) -> subprocess.CompletedProcess | None:
        """Runs `argv` capturing its output (None in a dry run); the caller reads the status."""
        self._show(argv)
        if self.dry_run:
            return None
        return _call(argv, capture=True)


def _call(argv: Sequence[str], capture: bool) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(argv), capture_output=capture, text=True, check=False)
    except FileNotFoundError:
        raise InputError(
            f"{argv[0]}: command not found; install it (gcloud: the Google Cloud CLI) "
            "and put it on PATH, or look at the commands with --dry-run"
        ) from None
