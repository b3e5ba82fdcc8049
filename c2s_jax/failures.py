"""Failures the command line can meet that are not bugs, each told in one line.

A full disk, a file without permission, a damaged checkpoint or bundle, an accelerator out
of memory, a loss that diverged: `c2s` prints what happened, where, and what to do, instead
of a traceback (``--debug`` or ``C2S_DEBUG=1`` shows the traceback). Anything else is a bug
and keeps its traceback.
"""

import errno
import re

from c2s_jax.errors import WRITING_NOTE, InputError, NonFiniteLossError

# What a message says when the real cause is an OSError seen only as text (TensorStore and
# orbax report I/O errors of their own threads as strings).
_TEXT_ERRNOS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
}
_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some or write elsewhere",
    errno.EFBIG: "the file size limit was reached (see `ulimit -f`); raise it or write elsewhere",
    errno.EACCES: "permission denied; choose a path you can write, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a path you own",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EISDIR: "is a folder, where a file was expected; give a file path",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.ENOENT: "does not exist; check the path",
    errno.EEXIST: "is in the way (a file where a folder is needed); move it or choose another path",
}
# TensorStore status codes that mean the bytes on disk are not what was written.
_DAMAGE = re.compile(r"DATA_LOSS|FAILED_PRECONDITION|OUT_OF_RANGE|Error reading|Error decoding")
_DEVICE_MEMORY = "RESOURCE_EXHAUSTED"


def describe(err: BaseException) -> str | None:
    """One line for the failure `err` (or one it was raised from), or None for a bug."""
    chain = _chain(err)
    for link in chain:
        if isinstance(link, InputError | NonFiniteLossError):
            return str(link)
    target = _target(chain)
    for link in chain:
        if isinstance(link, OSError) and link.errno in _ADVICE:
            where = target or link.filename
            return f"{where}: {_ADVICE[link.errno]}" if where else _ADVICE[link.errno]
    for link in chain:
        if isinstance(link, UnicodeDecodeError):
            return f"a file is not UTF-8 text ({link.reason} at byte {link.start}); convert it"
    for link in chain:
        text = _first_line(link)
        for marker, code in _TEXT_ERRNOS.items():
            if marker in str(link):
                return f"{target}: {_ADVICE[code]}" if target else f"{_ADVICE[code]} ({text})"
    for link in chain:
        text = _first_line(link)
        if _DEVICE_MEMORY in str(link):
            return (
                f"out of accelerator memory ({text}); lower config.data.batch_size or "
                "sequence lengths, raise config.train.microbatches, or check the fit with "
                "`c2s plan`"
            )
        if type(link).__name__ == "SafetensorError":
            return f"a safetensors file is damaged or incomplete ({text}); download it again"
        if _DAMAGE.search(str(link)) or "TensorStore" in str(link):
            return (
                f"a checkpoint or bundle on disk is damaged or incomplete ({text}); export "
                "or download it again (training resumes from an older checkpoint by itself)"
            )
    return None


def _target(chain: list[BaseException]) -> str | None:
    """The file an atomic write was making when it failed (its note), if any."""
    for link in chain:
        for note in getattr(link, "__notes__", ()):
            if note.startswith(WRITING_NOTE):
                return note.removeprefix(WRITING_NOTE)
    return None


def _chain(err: BaseException) -> list[BaseException]:
    """`err` and the exceptions it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    link: BaseException | None = err
    while link is not None and all(link is not s for s in seen):
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__
