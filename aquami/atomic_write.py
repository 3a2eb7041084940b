"""Output files that are either the whole new content or the previous file, never a part.

A command's ``--out`` file written in place was truncated first: a write that failed (a full disk,
a quota, a database connection lost midway through a NEM12 export) left the first 32 KiB of an
ALERTS.json, no longer JSON, and the previous run's file gone. Written here to a temporary file
beside it (the same file system, so that the rename is atomic), flushed to the disk, then renamed
over it; on any failure the temporary file is removed and the previous file is as it was.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def replacing(path: Path, *, newline: str | None = None, mode: int | None = None) -> Iterator[TextIO]:
    """A text file (UTF-8) to write ``path``'s new content to; it becomes ``path`` when the block
    ends without an exception, and is removed when one is raised. Without ``mode`` a new file is
    made as any would be (0666 less the umask) and a file replaced keeps its permissions; with it
    (``0o600`` for a file holding secrets), the file has that mode less the umask either way, from
    its first byte.

    A path that is no regular file (``--out /dev/stdout``, a named pipe) is written as it is: there is
    no file to keep, and a rename would have put a file where the device or pipe was. A symbolic link
    to a file keeps the link: the file it names is replaced, beside itself."""
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8", newline=newline) as stream:
            yield stream
        return
    path = path.resolve()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as file:
            if mode is None and path.exists():
                os.chmod(file.fileno(), stat.S_IMODE(path.stat().st_mode))
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """``path.write_text(text, encoding="utf-8")``, all or nothing (``mode``: see :func:`replacing`)."""
    with replacing(path, mode=mode) as file:
        file.write(text)
