"""Directories that appear whole or not at all: built beside their target, then renamed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from c2s_jax.atomic_write import (
    TEMPORARY_SUFFIX,
    current_umask,
    remove_stale_temporaries,
    temporary_prefix,
)
from c2s_jax.errors import InputError


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary directory beside ``path``; on success renames it to ``path``.

    ``path`` must be missing or an empty directory, so nothing already there is mixed
    with (or lost under) the new files. The rename is within one filesystem, which POSIX
    makes atomic: a reader sees no directory or the complete one. On any exception the
    temporary directory is removed and ``path`` is left as it was.

    Raises:
      InputError: ``path`` exists and is not an empty directory.
    """
    target = check_new_directory(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = Path(
        tempfile.mkdtemp(
            prefix=temporary_prefix(target), suffix=TEMPORARY_SUFFIX, dir=target.parent
        )
    )
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's folders are private (0700)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_new_directory(path: str | os.PathLike) -> Path:
    """``path`` as an absolute Path, if it is missing or an empty directory.

    Raises:
      InputError: ``path`` exists and is not an empty directory.
    """
    target = Path(path).absolute()
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise InputError(f"{target} exists and is not an empty directory; choose a new one")
    return target
