"""One gateway to a spool: a second process on the same spool file (a supervisor's restart racing a
manual run, two configurations naming one spool) is refused at its start, in one line naming the
spool and the holder's pid. Before, both ran, and both delivered and deleted the spool's batches.
The lock is an ``flock`` on a file beside the spool: a holder killed with SIGKILL leaves nothing
that stops the next start."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.spool import Spool, SpoolInUse, lock_path
from tests.gateway.helpers import config_text
from tests.services import free_port

AQUAMI = str(Path(sys.executable).with_name("aquami"))


def _wait(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Whether ``condition`` came to hold within ``timeout`` seconds (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_second_spool_on_the_same_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    first = Spool(path)
    first.append([{"meter_id": "WM-1", "n": 1}])
    (tmp_path / "link.sqlite").symlink_to(path)  # another name for the same spool: the same lock
    for other in (path, tmp_path / "link.sqlite"):
        with pytest.raises(SpoolInUse) as refused:
            Spool(other)
        assert str(refused.value) == (
            f"the spool {other} is in use by another gateway: pid {os.getpid()} holds its lock "
            f"{os.path.realpath(path)}.lock"
        )
    first.append([{"meter_id": "WM-1", "n": 2}])  # the refused opens took nothing from the holder
    first.close()
    again = Spool(path)
    assert again.depth() == 2
    again.close()


def _has_opened(spool: Path) -> bool:
    """The gateway has the spool open: its tables are there."""
    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'readings'").fetchone()[0] == 1
    except sqlite3.Error:
        return False


def _lock_says(spool: Path, pid: int) -> bool:
    try:
        return lock_path(spool).read_text().strip() == str(pid)
    except OSError:
        return False


def test_a_second_gateway_on_a_spool_exits_naming_it_and_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    spool = tmp_path / "spool.sqlite"
    config = tmp_path / "gw.toml"
    # a broker and a meter nobody answers for: the gateway runs, polling and spooling, until stopped
    config.write_text(config_text(f"mqtt://127.0.0.1:{free_port()}", {"b": free_port()}, {"b": [1]}, str(spool)))
    run = [AQUAMI, "gateway", "run", str(config)]
    holder = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    third: subprocess.Popen[bytes] | None = None
    try:
        assert _wait(lambda: _has_opened(spool) or holder.poll() is not None), "the first gateway opened its spool"
        assert holder.poll() is None, "the first gateway runs"

        second = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"error: the spool {spool} is in use by another gateway: pid {holder.pid} holds its lock "
            f"{os.path.realpath(spool)}.lock"
        ]
        assert holder.poll() is None, "the first gateway goes on"

        holder.send_signal(signal.SIGKILL)  # a crash: no clean stop gives the lock up
        holder.wait(60)
        third = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = third
        assert _wait(lambda: _lock_says(spool, started.pid) or started.poll() is not None), "the next gateway starts"
        assert third.poll() is None, "the next gateway runs"
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0
    finally:
        for process in (holder, third):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
