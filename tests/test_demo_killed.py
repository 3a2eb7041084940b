"""A demo killed with SIGKILL leaves its embedded PostgreSQL running (the server is in a session of
its own); the next demo on the same ``--data-dir`` stops it, says so, and leaves none running.

Real processes: the demo in a subprocess, killed with its whole process group as a supervisor
kills it; then the next demo run to its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


def _demo_args(data_dir: Path) -> list[str]:
    """``aquami demo`` on its embedded defaults, as a new user starts it (no AQUAMI_ environment)."""
    return [sys.executable, "-m", "aquami", "demo", "--port", "0", "--meters", "1", "--data-dir", str(data_dir)]


def _clean() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")}


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def _demo_until_database_ready(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A demo started in its own process group (to kill whole), once it has said its database is
    ready (its PostgreSQL then runs); what it said until then is in the failure when it never does."""
    demo = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    assert demo.stdout is not None
    said: list[str] = []
    try:
        for line in demo.stdout:
            said.append(line)
            if line.startswith("· database ready"):
                return demo
        raise AssertionError("the demo ended before its database was ready:\n" + "".join(said))
    except BaseException:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(timeout=30)
        raise


def test_the_next_demo_stops_the_postgresql_a_killed_demo_left_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    pgdata = data_dir / "pgdata"
    first = _demo_until_database_ready(_demo_args(data_dir), _clean())
    left = None
    try:
        left = _postmaster_pid(pgdata)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert _running(left), "the killed demo's PostgreSQL is gone: nothing is left over to test"

        second = subprocess.run(
            [*_demo_args(data_dir), "--duration", "0"], capture_output=True, text=True, timeout=180, env=_clean()
        )
        output = second.stdout + second.stderr
        assert second.returncode == 0, output
        assert not _running(left), f"the left-over PostgreSQL (pid {left}) still runs after the next demo\n{output}"
        assert not (pgdata / "postmaster.pid").exists(), f"a PostgreSQL still runs on {pgdata}\n{output}"
        assert f"· stopped the PostgreSQL (pid {left}) a killed demo left running on {data_dir}\n" in output, output
        assert "· stopped cleanly" in output, output
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        _stop_any(pgdata, left)


def _stop_any(pgdata: Path, left: int | None) -> None:
    """Leave no server of this test running, whatever failed: the one left over, or a later one."""
    pids = {left} if left is not None else set()
    with contextlib.suppress(OSError, ValueError):  # none written, or none there any more
        pids.add(_postmaster_pid(pgdata))
    for pid in pids:
        if _running(pid) and psutil.Process(pid).name() == "postgres":
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
