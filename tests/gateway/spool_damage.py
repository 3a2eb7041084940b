"""Damaging a real spool file as storage damages it: pages overwritten, the file cut short, its header
spoilt; and reading, independently of the salvage, which readings' pages a damage left intact.

Which rows a page holds is read from the page itself (SQLite's table b-tree leaf format: the cell
pointer array, then each cell's payload size and rowid as varints), and which pages are a table's
from SQLite's ``dbstat`` (each page's path from the table's root, ``/``, ``/000/``…).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aquami.contracts.reads import Reading
from gateway.spool import Spool

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def readings(count: int, meters: int = 7, prefix: str = "WM") -> list[dict[str, Any]]:
    """``count`` readings as the gateway stores them, each (meter_id, ts) once."""
    return [
        Reading(f"{prefix}-{n % meters:04d}", T0 + timedelta(minutes=n // meters), 100.0 + n / 1000).to_json()
        for n in range(count)
    ]


def write_spool(path: Path, bodies: list[dict[str, Any]], sealed_batches: int = 0, batch_size: int = 50) -> None:
    """A spool holding ``bodies``, the first ``sealed_batches`` batches of them sealed, closed so its
    WAL is checkpointed into the file (what is damaged is all there is)."""
    spool = Spool(path)
    spool.append(bodies)
    if sealed_batches:
        spool.seal_many(batch_size, sealed_batches)
    spool.close()
    assert not path.with_name(path.name + "-wal").exists()


def rows(path: Path) -> set[tuple[int, str, int | None]]:
    """(id, body, batch_seq) of every reading in a sound spool file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {(int(i), str(b), s) for i, b, s in db.execute("SELECT id, body, batch_seq FROM readings")}
    finally:
        db.close()


def page_size(path: Path) -> int:
    data = path.read_bytes()[16:18]
    size = int.from_bytes(data, "big")
    return 65536 if size == 1 else size


def table_pages(path: Path, table: str) -> dict[int, str]:
    """{page number: its path from the table's root} of ``table``'s b-tree (a sound file)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = db.execute("SELECT pageno, path FROM dbstat WHERE name = ?", (table,)).fetchall()
        return {int(page): str(where) for page, where in found}
    finally:
        db.close()


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        byte = data[at + i]
        if i == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    raise AssertionError("unreachable")


def leaf_rowids(data: bytes, size: int, page: int) -> list[int]:
    """The rowids a table leaf page holds (as the page says), [] for any other page."""
    start = (page - 1) * size
    header = start + (100 if page == 1 else 0)
    if data[header] != 0x0D:
        return []
    cells = int.from_bytes(data[header + 3 : header + 5], "big")
    found = []
    for k in range(cells):
        pointer = int.from_bytes(data[header + 8 + 2 * k : header + 10 + 2 * k], "big")
        _, at = _varint(data, start + pointer)
        rowid, _ = _varint(data, at)
        found.append(rowid)
    return found


def readable_ids(path: Path, damaged: Iterable[int]) -> set[int]:
    """The readings' ids on table leaf pages that a damage to pages ``damaged`` leaves intact (the
    file read before it is damaged): all the salvage may lose is what was on a damaged page (the
    pages above a leaf, which SQLite's b-tree goes through, are not needed: gateway.spool_pages)."""
    bad = set(damaged)
    data = path.read_bytes()
    size = page_size(path)
    ids: set[int] = set()
    for page in table_pages(path, "readings"):
        if page not in bad:
            ids.update(leaf_rowids(data, size, page))
    return ids


def overwrite_pages(path: Path, pages: Iterable[int], fill: bytes) -> None:
    """Overwrite whole pages (numbered from 1) with ``fill`` repeated: a card's bad blocks."""
    size = page_size(path)
    with path.open("r+b") as file:
        for page in pages:
            file.seek((page - 1) * size)
            file.write((fill * (size // len(fill) + 1))[:size])


def wal_pages(wal: Path) -> set[int]:
    """The page numbers a WAL file holds frames of (its 32-byte header, then each frame's 24-byte header,
    the page number first, and the page)."""
    data = wal.read_bytes()
    size = int.from_bytes(data[8:12], "big")
    return {int.from_bytes(data[at : at + 4], "big") for at in range(32, len(data) - size + 1, 24 + size)}
