"""Readings read straight from a damaged spool file's pages, where SQLite's own b-tree cannot lead to them.

A table's rows are found through the pages above them (its root, interior pages): one of those
damaged, SQLite loses every row below it though the rows' own pages are sound. Here the file's bytes
are read as SQLite lays them out (https://sqlite.org/fileformat2.html): every table leaf page (type
13) that is not on the file's freelist, each cell's rowid and record, and a record shaped as a
reading's row (``id`` NULL as the rowid's alias, ``body`` text, ``batch_seq`` an integer or NULL).

Only the file itself is read, and only when it has no WAL content (a page in the file may then be
an older version than the WAL's, holding readings acknowledged since); a freelist that cannot be
read stops it too (a free page holds readings deleted when they were acknowledged). A rowid found on
two pages is taken from neither.
"""

from __future__ import annotations

_LEAF_TABLE = 0x0D
_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


def _page_size(data: bytes) -> int | None:
    """The header's page size; SQLite's default, which a spool keeps, where the header's is spoilt."""
    if len(data) < 100:
        return None
    size = int.from_bytes(data[16:18], "big")
    size = 65536 if size == 1 else size
    return size if 512 <= size <= 65536 and size & (size - 1) == 0 else 4096


def _freelist(data: bytes, size: int, usable: int, pages: int) -> set[int] | None:
    """The file's free pages (trunks and leaves), or None if its freelist does not read true."""
    trunk, count = int.from_bytes(data[32:36], "big"), int.from_bytes(data[36:40], "big")
    free: set[int] = set()
    while trunk:
        if not 2 <= trunk <= pages or trunk in free or len(free) > pages:
            return None
        free.add(trunk)
        start = (trunk - 1) * size
        following = int.from_bytes(data[start : start + 4], "big")
        leaves = int.from_bytes(data[start + 4 : start + 8], "big")
        if leaves > usable // 4 - 2:
            return None
        for k in range(leaves):
            leaf = int.from_bytes(data[start + 8 + 4 * k : start + 12 + 4 * k], "big")
            if not 2 <= leaf <= pages:
                return None
            free.add(leaf)
        trunk = following
    return free if len(free) == count else None


def _reading(record: bytes) -> tuple[str, int | None] | None:
    """(body, batch_seq) of a record shaped as a reading's row, else None."""
    header_size, at = _varint(record, 0)
    types = []
    while at < header_size:
        kind, at = _varint(record, at)
        types.append(kind)
    if len(types) != 3 or types[0] != 0 or types[1] < 13 or types[1] % 2 == 0:
        return None
    text_size, kind = (types[1] - 13) // 2, types[2]
    at = header_size + text_size
    if not (kind in (0, 8, 9) or kind in _INT_SIZES) or len(record) != at + _INT_SIZES.get(kind, 0):
        return None
    body = record[header_size:at].decode("utf-8")
    seq = None if kind == 0 else kind - 8 if kind in (8, 9) else int.from_bytes(record[at:], "big", signed=True)
    return body, seq


def _cells(data: bytes, page: int, size: int, usable: int) -> list[tuple[int, str, int | None]]:
    start = (page - 1) * size
    if data[start] != _LEAF_TABLE:
        return []
    cells = int.from_bytes(data[start + 3 : start + 5], "big")
    if 8 + 2 * cells > usable:
        return []
    found = []
    for k in range(cells):
        pointer = int.from_bytes(data[start + 8 + 2 * k : start + 10 + 2 * k], "big")
        if not 8 + 2 * cells <= pointer < usable:
            continue
        try:
            length, at = _varint(data, start + pointer)
            rowid, at = _varint(data, at)
            if length > usable - 35 or at - start + length > usable:  # spills to overflow pages, or off its page
                continue
            reading = _reading(data[at : at + length])
        except (IndexError, UnicodeDecodeError):
            continue
        if reading is not None:
            found.append((rowid, *reading))
    return found


def readings_on_pages(data: bytes) -> dict[int, tuple[str, int | None]] | None:
    """{rowid: (body, batch_seq)} of every record shaped as a reading on the live table leaf pages of
    a spool file's bytes; None when its page size or freelist cannot be read."""
    size = _page_size(data)
    if size is None:
        return None
    usable = size - data[20]
    pages = len(data) // size
    free = _freelist(data, size, usable, pages)
    if free is None:
        return None
    found: dict[int, tuple[str, int | None]] = {}
    twice: set[int] = set()
    for page in range(2, pages + 1):
        if page in free:
            continue
        for rowid, body, seq in _cells(data, page, size, usable):
            if rowid in found:
                twice.add(rowid)
            found[rowid] = (body, seq)
    for rowid in twice:
        del found[rowid]
    return found
