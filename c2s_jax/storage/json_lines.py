"""Files of JSON records, one per line (a sweep's results.jsonl): appended durably and read
back by one rule, whoever reads them.

Records are appended whole and fsync'ed, so a crash leaves at most one cut-short last line.
The rule: blank lines are ignored; a last line that does not parse is a write cut short and
is skipped (readers are told its number, writers remove it before they append); a line that
does not parse before the last is an error naming the file and line. A last line that
parses is complete with or without its newline, so a file typed by hand needs none.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from c2s_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class JsonLines:
    """The records of a file.

    Attributes:
      records: (1-based line number, parsed value) of every complete record, in order.
      cut_short: the line number of a skipped incomplete last line, or None.
    """

    records: list[tuple[int, Any]]
    cut_short: int | None


def read_json_lines(path: str | os.PathLike) -> JsonLines:
    """The records of `path` (a file that must exist).

    Raises:
      InputError: the file is not UTF-8 text, or a line before the last is not JSON (file
        and line named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text (byte {err.start}): a JSON-lines file is UTF-8"
        ) from None
    lines = [(i, line) for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    records, cut_short = [], None
    for position, (number, line) in enumerate(lines):
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            if position == len(lines) - 1 and not text.endswith("\n"):
                cut_short = number
                break
            raise InputError(
                f"{path}, line {number}: not a JSON object ({err.msg}); correct or remove the line"
            ) from None
    return JsonLines(records, cut_short)


def drop_cut_short_line(path: str | os.PathLike) -> None:
    """Removes an incomplete last line left by an interrupted append, and ends a complete
    last line that lacks its newline, so that the next append starts a line of its own."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return
    with path.open("r+b") as f:
        try:
            json.loads(data[keep:])
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            f.truncate(keep)
        else:
            f.seek(len(data))
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def append_json_line(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Appends `record` as one line (keys sorted), flushed and fsync'ed before returning."""
    line = json.dumps(record, sort_keys=True) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
