"""One workdir, one writer: a lock file that training, GRPO and sweeps hold while they run.

Two runs writing one workdir would interleave metrics and delete each other's checkpoints,
so the second one stops at once with a line naming the holder. The lock is
``WORKDIR/run.lock`` holding the owner's host, process id, command and start time:

- local (and NFS) workdirs: an ``flock`` on that file, which the kernel drops when the
  holder dies, so a killed run never blocks the next one;
- object stores (``gs://``): an object created only if absent (the store's
  if-generation-match=0 precondition, through gcsfs's exclusive mode). A lock left by a
  killed process of this host is taken over with a note; one of another host is reported,
  with the command that removes it once that run is known to be gone.

In a multi-host run only process 0 takes the lock and every process learns the outcome,
so all of them stop together when the workdir is busy.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator

import fsspec
import jax
import numpy as np
from etils import epath

from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import is_remote, process_alive, storage_path

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class WorkdirBusyError(InputError):
    """Another live run holds the workdir's lock; the message names it and the lock file."""


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike, command: str) -> Iterator[None]:
    """Holds the lock of `workdir` (created if missing) for the body of the `with`.

    Args:
      workdir: the run's folder, local or a URL; a local one created here is removed again
        if the run leaves it empty.
      command: what holds it, for the message a second run sees (e.g. "c2s train").

    Raises:
      WorkdirBusyError: another live run holds it.
    """
    path = storage_path(workdir) / LOCK_FILE
    created = not is_remote(path) and not path.parent.exists()
    try:
        with _held_by_chief(path, command):
            yield
    finally:
        # A run that failed before writing anything leaves no empty workdir behind.
        if created and path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()


@contextlib.contextmanager
def _held_by_chief(path: epath.Path, command: str) -> Iterator[None]:
    if jax.process_count() == 1:
        with _held(path, command):
            yield
        return
    # The chief locks; the others wait for its outcome so that no process starts alone.
    from jax.experimental import multihost_utils

    with contextlib.ExitStack() as stack:
        failure = None
        if jax.process_index() == 0:
            try:
                stack.enter_context(_held(path, command))
            except WorkdirBusyError as err:
                failure = err
        busy = multihost_utils.broadcast_one_to_all(np.int32(failure is not None))
        if failure is not None:
            raise failure
        if int(busy):
            raise WorkdirBusyError(f"{path.parent} is in use by another run (see process 0)")
        yield


def _owner(command: str) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "token": uuid.uuid4().hex,
    }


def _busy(path: epath.Path, holder: dict) -> WorkdirBusyError:
    who = (
        f"{holder.get('command', 'a run')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('started', '?')})"
    )
    return WorkdirBusyError(
        f"{path.parent} is in use by {who}: wait for it to end or use another --workdir; "
        f"if that run is gone, delete {path}"
    )


def _parse(text: str) -> dict:
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def _held(path: epath.Path, command: str) -> Iterator[None]:
    owner = _owner(command)
    if is_remote(path):
        _acquire_object(path, owner)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if _parse(path.read_text()).get("token") == owner["token"]:
                    path.unlink()
        return
    fd = _acquire_file(path, owner)
    try:
        yield
    finally:
        # Unlinked while still locked: a run that opened the old file sees it is no longer
        # the lock (its inode check fails) and opens the new one.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _acquire_file(path: epath.Path, owner: dict) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise _busy(path, _parse(_read_quietly(path))) from None
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)  # the file was released and unlinked meanwhile: lock the new one
    previous = _parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
    if previous:
        log.warning(
            "%s: taking over the lock of %s (pid %s on %s), which ended without releasing it",
            path.parent,
            previous.get("command", "a run"),
            previous.get("pid", "?"),
            previous.get("host", "?"),
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    return fd


def _read_quietly(path: epath.Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _acquire_object(path: epath.Path, owner: dict) -> None:
    # epath has no exclusive mode; fsspec's gs:// (gcsfs) turns "xb" into the store's
    # if-generation-match=0 precondition.
    fs, key = fsspec.core.url_to_fs(os.fspath(path))
    for _ in range(2):
        try:
            with fs.open(key, "xb") as sink:
                sink.write(json.dumps(owner).encode())
            return
        except FileExistsError:
            holder = _parse(_read_quietly(path))
        pid = holder.get("pid")
        if holder.get("host") != owner["host"] or not isinstance(pid, int) or process_alive(pid):
            raise _busy(path, holder)
        log.warning(
            "%s: taking over the lock of %s (pid %d on this host), which was killed",
            path.parent,
            holder.get("command", "a run"),
            pid,
        )
        path.unlink(missing_ok=True)
    raise _busy(path, _parse(_read_quietly(path)))
