"""The one rule by which results.jsonl files are read and repaired: cut-short last lines,
hand-typed files without a final newline, corrupted lines, non-UTF-8 files."""

import pytest

from c2s_jax.errors import InputError
from c2s_jax.storage.json_lines import append_json_line, drop_cut_short_line, read_json_lines


def test_a_cut_short_last_line_is_skipped_then_removed_before_appending(tmp_path):
    path = tmp_path / "results.jsonl"
    append_json_line(path, {"name": "a", "loss": 1.0})
    with path.open("a") as f:
        f.write('{"name": "b", "lo')  # an append cut short
    lines = read_json_lines(path)
    assert lines.records == [(1, {"loss": 1.0, "name": "a"})] and lines.cut_short == 2
    drop_cut_short_line(path)
    append_json_line(path, {"name": "c", "loss": 2.0})
    assert [r["name"] for _, r in read_json_lines(path).records] == ["a", "c"]
    assert path.read_text().count("\n") == 2


def test_a_complete_last_line_needs_no_newline_and_is_kept_by_the_repair(tmp_path):
    path = tmp_path / "typed.jsonl"
    path.write_text('{"name": "a"}\n\n{"name": "b"}')
    lines = read_json_lines(path)
    assert lines.records == [(1, {"name": "a"}), (3, {"name": "b"})] and lines.cut_short is None
    drop_cut_short_line(path)
    append_json_line(path, {"name": "c"})
    assert [r["name"] for _, r in read_json_lines(path).records] == ["a", "b", "c"]


def test_a_corrupted_complete_line_names_its_number(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"name": "a"}\nnot json\n')
    with pytest.raises(InputError, match=r"results.jsonl, line 2: not a JSON object"):
        read_json_lines(path)
    # A last line with its newline was written whole: corrupted, not cut short.
    path.write_text('{"name": "a"}\n{"name": \n')
    with pytest.raises(InputError, match=r"results.jsonl, line 2: not a JSON object"):
        read_json_lines(path)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"name": "\xff"}\n')
    with pytest.raises(InputError, match=r"results.jsonl: not UTF-8 text \(byte 10\)"):
        read_json_lines(path)
