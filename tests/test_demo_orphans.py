"""A demo killed with SIGKILL without ``--data-dir`` leaves its temporary folder and its embedded
PostgreSQL running; the next demo (in a folder of its own) stops that server, removes the folder and
says so in one line, and touches no folder a living demo uses nor any it did not mark.

Real processes, as in test_demo_killed: the demo in a subprocess, killed with its whole process
group; then the next demo run to its end. Both see a short folder of their own as the temporary folder (TMPDIR).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from aquami.demo_folders import MARKER, PREFIX, clear_left_overs
from tests.test_demo_killed import _demo_until_database_ready, _postmaster_pid, _running, _stop_any


def _env(tmp: Path) -> dict[str, str]:
    """A new user's environment (no AQUAMI_), with ``tmp`` as the temporary folder."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")}, "TMPDIR": str(tmp)}


DEMO = [sys.executable, "-m", "aquami", "demo", "--port", "0", "--meters", "1"]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path: PostgreSQL's socket goes in the demo's folder under it,
    and a socket's path holds at most 107 bytes (a pytest worker's tmp_path is too long for it)."""
    folder = Path(tempfile.mkdtemp(prefix="aqo-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_next_demo_clears_the_folder_and_postgresql_a_killed_temporary_demo_left(short_tmp: Path) -> None:
    tmp_path = short_tmp
    # a folder a living demo uses (this process stands for it), and one no demo marked
    me = psutil.Process()
    living = tmp_path / f"{PREFIX}living"
    living.mkdir()
    (living / MARKER).write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))
    unmarked = tmp_path / f"{PREFIX}unmarked"
    unmarked.mkdir()
    (unmarked / "keep.txt").write_text("not a demo's")

    first = _demo_until_database_ready(DEMO, _env(tmp_path))
    left = None
    folder = None
    try:
        (folder,) = set(tmp_path.glob(f"{PREFIX}*")) - {living, unmarked}
        left = _postmaster_pid(folder / "pgdata")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert _running(left), "the killed demo's PostgreSQL is gone: nothing is left over to test"

        second = subprocess.run(
            [*DEMO, "--duration", "0"], capture_output=True, text=True, timeout=180, env=_env(tmp_path)
        )
        output = second.stdout + second.stderr
        assert second.returncode == 0, output
        assert not _running(left), f"the left-over PostgreSQL (pid {left}) still runs after the next demo\n{output}"
        assert not folder.exists(), f"the killed demo's folder is still there\n{output}"
        said_once = (
            f"· stopped the PostgreSQL (pid {left}) a killed demo left running on {folder}, and removed that folder\n"
        )
        assert output.count(said_once) == 1, output
        assert "· stopped cleanly" in output, output
        # the living demo's folder and the unmarked one are as they were; the second demo's own is gone
        assert sorted(tmp_path.glob(f"{PREFIX}*")) == [living, unmarked], output
        assert (unmarked / "keep.txt").read_text() == "not a demo's"
        assert (living / MARKER).is_file()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        if folder is not None:
            _stop_any(folder / "pgdata", left)


def _mark(folder: Path, pid: int, started: float) -> Path:
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"pid": pid, "started": started}))
    (folder / "gateway-spool.sqlite").write_text("")
    return folder


def test_only_marked_folders_of_demos_that_are_gone_are_removed(tmp_path: Path) -> None:
    """Without a server in them: a marked folder whose demo has exited goes, and so does one whose
    demo's id a later process took (another start time); a living demo's folder, an unmarked one, a
    link to a killed demo's folder and a folder whose marker is a link stay."""
    me = psutil.Process()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    exited = _mark(tmp_path / f"{PREFIX}exited", gone.pid, me.create_time())
    reused = _mark(tmp_path / f"{PREFIX}reused", me.pid, me.create_time() - 3600)
    living = _mark(tmp_path / f"{PREFIX}living", me.pid, me.create_time())
    unmarked = tmp_path / f"{PREFIX}unmarked"
    unmarked.mkdir()
    target = _mark(tmp_path / "elsewhere", gone.pid, me.create_time())
    (tmp_path / f"{PREFIX}link").symlink_to(target)
    linked_marker = tmp_path / f"{PREFIX}linked-marker"
    linked_marker.mkdir()
    (linked_marker / MARKER).symlink_to(target / MARKER)

    said: list[str] = []
    assert clear_left_overs(said.append, tmp_path) == 2
    assert said == [f"removed {exited}, a killed demo's folder", f"removed {reused}, a killed demo's folder"]
    assert not exited.exists() and not reused.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["elsewhere", f"{PREFIX}link", f"{PREFIX}linked-marker", f"{PREFIX}living", f"{PREFIX}unmarked"]
    )
    assert (target / MARKER).is_file() and (living / MARKER).is_file()
