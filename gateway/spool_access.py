"""Who may read the spool's files: the gateway's own user, not every user of the box.

The spool holds every meter's readings until they are delivered (a household's water use, hour by
hour: personal data) and its meters' health. SQLite creates a database with the process's umask
(0644 under the usual 0022), and its ``-wal`` and ``-shm`` files with the database's mode, so before,
any account on the gateway's box (a maintenance login, a compromised service) could read them.

A new spool is created owner-only (0600) before SQLite opens it, so its WAL and shared memory files
are too. An existing spool readable or writable by every user loses those permissions as it opens
(its group's are left as an operator set them) and the log says so once. On a filesystem whose modes
are set at mount (vfat, as an SD card may be formatted), the change may not take: the log says that
too, naming the mount options that decide it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

#: A new spool's mode: its user reads and writes it, no one else.
OWNER_ONLY = 0o600
#: The bits of the users who are neither the file's owner nor in its group.
_OTHERS = stat.S_IRWXO


def create_owner_only(path: Path) -> None:
    """Create ``path`` as an empty file only its owner may read and write (SQLite takes an empty
    file for a new database). FileExistsError where it is already there."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))


def files_of(spool: Path) -> list[Path]:
    """The spool's database and, where they are, its WAL and shared memory files."""
    beside = (spool.with_name(spool.name + "-wal"), spool.with_name(spool.name + "-shm"))
    return [p for p in (spool, *beside) if p.exists()]


def open_to_others(path: Path) -> bool:
    """Whether users other than ``path``'s owner and group may read, write or run it."""
    return bool(path.stat().st_mode & _OTHERS)


def close_to_others(spool: Path) -> tuple[list[Path], list[Path]]:
    """Take every user's permissions off the spool's files that have them: (the files closed, the
    files still open to others: a chmod refused or ignored by the filesystem)."""
    closed: list[Path] = []
    still_open: list[Path] = []
    for path in files_of(spool):
        if not open_to_others(path):
            continue
        with contextlib.suppress(OSError):  # refused (not its owner, vfat): said as still open
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~_OTHERS)
        (still_open if open_to_others(path) else closed).append(path)
    return closed, still_open
