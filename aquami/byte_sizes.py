"""Sizes of files and disks in the words an operator reads, the same in every part's log and answer."""

from __future__ import annotations

#: the units above bytes, each 1024 of the one before
_UNITS = (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40))


def size_in_words(size: int) -> str:
    """A size as an operator reads it: ``0 bytes``, ``1 byte``, ``900 bytes``, ``32.0 KiB``,
    ``16.0 MiB``, ``1.5 GiB``: the largest unit that says it as 1 or more (to one decimal), so a
    small size is not rounded to ``0.0 MiB``."""
    if size < 1024:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    for name, unit in _UNITS[:-1]:
        if round(size / unit, 1) < 1024:  # 1023.96 KiB is said 1.0 MiB, not 1024.0 KiB
            return f"{size / unit:.1f} {name}"
    name, unit = _UNITS[-1]
    return f"{size / unit:.1f} {name}"
