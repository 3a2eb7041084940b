"""``aquami.atomic_write``: an output file is the whole new content or the previous file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aquami import atomic_write


class _LostConnection(Exception):
    pass


def _chunks():
    yield "100,NEM12,...\n"
    yield "200,...\n"
    raise _LostConnection  # the database gone midway through an export


def test_a_stream_that_fails_midway_leaves_the_previous_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("the previous export\n")
    with pytest.raises(_LostConnection), atomic_write.replacing(path, newline="") as file:
        file.writelines(_chunks())
    assert path.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]


def test_a_whole_write_replaces_the_file_and_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    atomic_write.write_text(path, "[]\n")
    assert path.read_text() == "[]\n" and (path.stat().st_mode & 0o777) == 0o640
    atomic_write.write_text(tmp_path / "new.json", "é\n")  # UTF-8, whatever the locale
    assert (tmp_path / "new.json").read_bytes() == "é\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json", "new.json"]


def test_a_pipe_is_written_as_it_is_and_a_link_s_file_is_replaced_beside_it(tmp_path: Path) -> None:
    """``--out /dev/stdout`` or a named pipe: renamed over, the pipe would have become a file and
    what was written never reached the reader; a link would have become a file of its own."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write.write_text(pipe, "[]\n")
        assert os.read(reader, 100) == b"[]\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "alerts.json").write_text("old\n")
    link = tmp_path / "alerts.json"
    link.symlink_to(tmp_path / "real" / "alerts.json")
    atomic_write.write_text(link, "new\n")
    assert link.is_symlink() and (tmp_path / "real" / "alerts.json").read_text() == "new\n"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["alerts.json"]


def test_a_file_holding_secrets_is_its_owner_s_alone_new_or_replaced(tmp_path: Path) -> None:
    """The rig's gateway file holds wireless meters' keys: written again over a last run's file
    readable by all, it kept that file's 0644 (and the gateway warned of a key every user can read)."""
    new, old = tmp_path / "new.toml", tmp_path / "old.toml"
    old.write_text("last run's\n")
    os.chmod(old, 0o644)
    atomic_write.write_text(new, "key = 1\n", mode=0o600)
    atomic_write.write_text(old, "key = 2\n", mode=0o600)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (new, old)] == [0o600, 0o600]
    assert old.read_text() == "key = 2\n"
