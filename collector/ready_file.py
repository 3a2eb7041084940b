"""The collector's ready file (``--ready-file``): there while the broker has granted its subscriptions.

A deployment starts its gateways once the file exists (``docker-compose.yml``'s healthcheck), since
until the collector's session exists the broker keeps nothing for it. The file's folder is checked
before the collector connects: a file that could not be written inside paho's subscription callback
killed paho's network thread, and the collector stored nothing while it went on running.
"""

from __future__ import annotations

import os
from pathlib import Path


class ReadyFileUnusable(Exception):
    """The ready file cannot be written where it was asked for: said in one line, before connecting."""


class ReadyFile:
    def __init__(self, path: Path):
        self.path = path

    def check(self) -> None:
        """Raise :class:`ReadyFileUnusable` unless a file can be made in the ready file's folder
        (written and removed again: the folder's permissions alone do not say a read-only mount)."""
        folder = self.path.parent
        if not folder.is_dir():
            raise ReadyFileUnusable(f"--ready-file {self.path}: there is no folder {folder}")
        if self.path.is_dir():
            raise ReadyFileUnusable(f"--ready-file {self.path}: is a folder")
        probe = folder / f".{self.path.name}.{os.getpid()}.probe"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            probe.unlink()
        except OSError as error:
            raise ReadyFileUnusable(f"--ready-file {self.path}: cannot write in {folder} ({error.strerror})") from None

    def write(self, text: str) -> None:
        self.path.write_text(text)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
