"""Atomic writes: whole files or none, with the mode the user's umask gives new files."""

import os
import stat

import pytest

from c2s_jax.atomic_write import atomic_path, current_umask, write_text_atomic


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask):
    assert current_umask() == umask
    path = tmp_path / "shared" / "result.json"
    write_text_atomic(path, "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    # The same as a file opened the ordinary way.
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(path.stat().st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
