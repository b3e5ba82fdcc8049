"""Atomic writes: whole files and folders or none, with the mode the user's umask gives new
files, and no leftovers of killed writers."""

import os
import socket
import stat
import subprocess
import sys

import pytest

from c2s_jax.storage.atomic import atomic_directory, atomic_path, current_umask, write_text_atomic


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


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_writers_on_this_host_are_removed_and_no_others(tmp_path):
    target = tmp_path / "cells.parquet"
    host = socket.gethostname()
    dead = tmp_path / f".cells.parquet.{host}.{_dead_pid()}.a1b2c3.tmp"
    dead_folder = tmp_path / f".cells.parquet.{host}.{_dead_pid()}.d4e5f6.tmp"
    live = tmp_path / f".cells.parquet.{host}.{os.getpid()}.g7h8i9.tmp"
    elsewhere = tmp_path / f".cells.parquet.other-host.{_dead_pid()}.j0k1l2.tmp"
    for path in (dead, live, elsewhere):
        path.write_text("partial")
    dead_folder.mkdir()
    (dead_folder / "part.bin").write_text("partial")
    write_text_atomic(target, "whole")
    assert target.read_text() == "whole"
    assert not dead.exists() and not dead_folder.exists()
    assert live.exists() and elsewhere.exists()


def test_a_folder_written_whole_gets_the_umask_mode_and_cleans_leftovers(tmp_path, umask):
    target = tmp_path / "bundle"
    stale = tmp_path / f".bundle.{socket.gethostname()}.{_dead_pid()}.x9y8z7.tmp"
    stale.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
    assert (target / "weights.bin").read_bytes() == b"w"
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
