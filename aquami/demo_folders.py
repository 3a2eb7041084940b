"""The temporary folders of demos run without ``--data-dir``, and those killed demos left behind.

A demo without ``--data-dir`` works in ``$TMPDIR/aquami-demo-*`` and removes it when it stops. Killed
with SIGKILL it cannot: the folder stays, and so does its embedded PostgreSQL (in a session of its
own, which the kill does not reach). aquami.left_over_postgres stops such a server when the next demo
starts on the same folder, but the next temporary demo makes a new folder and never looked at the
old one: every killed demo left a server running until the machine restarted.

So each demo marks its folder (``MARKER``: its process id and start time) and, when it starts, looks
for marked folders whose demo is gone: it stops the PostgreSQL left there (the rules of
left_over_postgres: none a living process still uses) and removes the folder. A folder is touched
only when it is a real folder of this user with the marker, and the process the marker names is not
running (the same id, started at the same time: not a later process that took the id). Anything
else named aquami-demo-* (a folder from before the marker, someone else's) is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil

from aquami.left_over_postgres import postmaster_of, stop_left_over

PREFIX = "aquami-demo-"
#: The file that says a folder is a demo's, and which process is using it.
MARKER = ".aquami-demo.json"
#: psutil's start times are computed from clock ticks: equal for the same process, give or take this.
SAME_START_S = 0.05


def make_demo_folder() -> Path:
    """A new temporary folder for this process's demo, marked as its own."""
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    me = psutil.Process()
    (folder / MARKER).write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))
    return folder


def clear_left_overs(say: Callable[[str], None], root: Path | None = None) -> int:
    """Stop the PostgreSQL of each folder a killed demo left in ``root`` (the temporary folder) and
    remove the folder, telling ``say`` in one line each; how many were removed. A folder that cannot
    be cleared is said and left: the demo about to start does not need it."""
    removed = 0
    for folder in sorted(Path(root or tempfile.gettempdir()).glob(PREFIX + "*")):
        if not _killed_demos(folder):
            continue
        pgdata = folder / "pgdata"
        try:
            stopped = stop_left_over(pgdata)
            if stopped is None and postmaster_of(pgdata) is not None:
                continue  # a living process still uses that server (left_over_postgres's rule)
            shutil.rmtree(folder)
        except FileNotFoundError:  # another demo starting at the same time cleared it first
            continue
        except OSError as err:
            say(f"left {folder}, a killed demo's folder, as it is: {err}")
            continue
        removed += 1
        say(f"{stopped}, and removed that folder" if stopped else f"removed {folder}, a killed demo's folder")
    return removed


def _killed_demos(folder: Path) -> bool:
    """A folder of this user, marked by a demo whose process is gone."""
    try:
        info = folder.lstat()
        marker = folder / MARKER
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or not stat.S_ISREG(marker.lstat().st_mode):
            return False
        mark = json.loads(marker.read_text())
        pid, started = mark["pid"], mark["started"]
        if not isinstance(pid, int) or not isinstance(started, int | float):
            return False
    except (OSError, ValueError, KeyError, TypeError):  # gone, not ours to read, not a demo's marker
        return False
    try:
        demo = psutil.Process(pid)
        living = abs(demo.create_time() - started) < SAME_START_S and demo.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        living = False
    except psutil.Error:  # there, but not ours to see: not known to be gone
        living = True
    return not living
