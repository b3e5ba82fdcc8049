"""Atomic writes of files and directories: a reader sees the old one or the complete new
one, never half.

Destinations are local paths or object-store URLs (``gs://bucket/key``, through
``etils.epath``). Object stores have no rename and no append, but a single object upload
appears whole when it completes, so a remote file is built locally and uploaded in one
write.
"""

import contextlib
import glob
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from etils import epath

from c2s_jax.errors import WRITING_NOTE, InputError

log = logging.getLogger(__name__)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is an object-store URL (``gs://...``) rather than a local path."""
    return "://" in os.fspath(path)


def storage_path(path: str | os.PathLike) -> epath.Path:
    """`path` as an ``epath.Path``: local paths made absolute, URLs kept as they are."""
    if is_remote(path):
        return epath.Path(path)
    return epath.Path(os.path.abspath(path))


TEMPORARY_SUFFIX = ".tmp"


def temporary_prefix(target: Path) -> str:
    """How temporaries of `target` start: hidden, beside it, naming this host and process
    (``.NAME.HOST.PID.``), so a later run can tell the leftovers of a killed one."""
    return f".{target.name}.{socket.gethostname()}.{os.getpid()}."


def remove_stale_temporaries(target: Path) -> None:
    """Removes the temporaries of `target` (files or folders) that processes of this host
    left when they were killed; those of live processes and of other hosts stay."""
    _remove_stale(target.parent, f".{target.name}.")


def remove_stale_temporaries_in(folder: str | os.PathLike) -> None:
    """Removes every temporary in the local `folder` that a killed process of this host
    left, whatever file or folder it was meant to become (a run's start-up clean-up)."""
    if not is_remote(folder):
        _remove_stale(Path(folder), ".")


def _remove_stale(folder: Path, start: str) -> None:
    # .NAME.HOST.PID.RANDOM.tmp, where NAME (and HOST) may hold dots: match this host's.
    ours = re.compile(rf"\.(.+)\.{re.escape(socket.gethostname())}\.(\d+)\.[^.]+{TEMPORARY_SUFFIX}")
    for candidate in folder.glob(f"{glob.escape(start)}*{TEMPORARY_SUFFIX}"):
        match = ours.fullmatch(candidate.name)
        if match is None or process_alive(int(match[2])):
            continue
        if candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        log.info("removed %s, left by a killed process (%s)", candidate, match[2])


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host is running (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where Linux shows
    it (setting and restoring it would briefly affect files other threads create)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_file(path: str | os.PathLike, what: str = "output") -> None:
    """Raises InputError, before any work, when the local `path` cannot become a file.

    Args:
      path: where a file will be written.
      what: how the user named it (an option such as "--out-h5ad"), for the message.
    """
    if is_remote(path):
        return
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} {target}: is a folder; give a file path inside it")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {target}: {parent} is a file, not a folder")
            return


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a local temporary path; on success it becomes `path` in one step.

    For a local `path` the temporary file lives in the destination folder so the final
    `os.replace` is a same-filesystem rename, which POSIX makes atomic. For a remote `path`
    it lives in the local temporary folder and is uploaded as one object. On any exception
    the temporary file is removed and `path` is left untouched.
    """
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="c2s-upload-") as staging:
            tmp = Path(staging) / epath.Path(path).name
            yield tmp
            upload_file(tmp, path)
        return
    check_output_file(path)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=temporary_prefix(target), suffix=TEMPORARY_SUFFIX, dir=target.parent
    )
    # mkstemp makes the file private (0600); the finished file gets the mode any new file
    # gets under the user's umask, so a shared results folder stays readable by its group.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as err:
        # Writers name the temporary file, if anything: the user knows the target.
        err.add_note(f"{WRITING_NOTE}{target}")
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` (local or remote) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def upload_file(local: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copies the local file `local` to the remote URL `target` as one object write.

    The object appears only when its upload completes, so readers never see part of it;
    an existing object is replaced. Object stores need no folders, so none are made.
    """
    with open(local, "rb") as source, epath.Path(target).open("wb") as sink:
        shutil.copyfileobj(source, sink)


def upload_directory(local: str | os.PathLike, target: str | os.PathLike, last: str) -> None:
    """Copies the files under the local directory `local` to the remote URL `target`,
    file `last` last.

    A directory of objects cannot appear at once; readers that wait for `last` (a file
    directly in `local`, such as a manifest) see the others complete before it.
    """
    source, destination = Path(local), epath.Path(target)
    marker = source / last
    if not marker.is_file():
        raise FileNotFoundError(f"{marker} is missing: nothing would mark the copy complete")
    others = sorted(p for p in source.rglob("*") if p.is_file() and p != marker)
    for file in [*others, marker]:
        upload_file(file, destination / file.relative_to(source).as_posix())


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
