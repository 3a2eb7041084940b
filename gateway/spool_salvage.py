"""A damaged spool file: set aside, never deleted, and every reading still readable salvaged from it.

A spool's file can be damaged (``database disk image is malformed``, ``file is not a database``):
an SD card failing, a write torn by the storage. Before, the gateway stopped at its start (exit 1)
and its supervisor started it again, to stop again, for ever: no meter was polled, so the readings
in the meters' own logs rolled over, and the damaged file's readings waited for someone who did not
know. Now (``[spool] on_damage = "set_aside"``, the default) the file, its ``-wal`` and its ``-shm``
are renamed ``NAME.damaged-YYYYMMDDTHHMMSSZ`` (``-wal``, ``-shm``: SQLite still opens the three as
one database), a new spool is made, and what can still be read from the old one is copied into it:
each table row by row, a range of rows at a time, a range that fails halved until the rows it
cannot read are alone (one bad page loses its own rows, not the rest); readings the b-tree no
longer leads to (a damaged root or interior page, a spoilt header) are read from their own pages
(:mod:`gateway.spool_pages`). A salvaged reading keeps its
body as it was stored (the collector keys a reading by ``(meter_id, ts)``, so one delivered before
is stored once), its id and its ``batch_seq``, and the batch counter goes on from the old one's, so
sealed batches are sent again as after any restart. The gateway says it in one ERROR line, in its
health status (``spool_damaged``) and in a ``spool_damaged`` event, then polls.

A spool that cannot be opened for another reason (a disk mounted read-only, permissions, a full
disk, another gateway holding it) is not damaged: it is left as it is, and the gateway stops as
before (:class:`gateway.spool.SpoolUnusable`), as those pass by themselves or by a hand that knows.
A damaged file whose new spool cannot be made (a full disk) is put back (:func:`put_back`) and the
gateway stops alike: the start that finds room salvages it.

SQLite keeps no checksum of a row: a byte changed inside a reading's text, in a page whose structure
is intact, is not seen. A salvaged body must still be a JSON object naming its ``meter_id`` and
``ts`` (else it is counted lost), and the collector checks each reading against its schema.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.spool_pages import readings_on_pages

log = logging.getLogger(__name__)

#: SQLite's primary result codes for a damaged file (an extended code's low byte is its primary).
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

#: Rows read in one query: a range that fails is halved down to single rows.
_RANGE = 512

#: The tables copied, and their columns (those the damaged file has: an earlier version's lack some).
#: ``readings`` and ``messages`` keep their ids (their order, and ``batch_seq``'s grouping).
_TABLES: dict[str, tuple[str, ...]] = {
    "readings": ("id", "body", "batch_seq"),
    "messages": ("id", "topic", "payload"),
    "counters": ("name", "value"),
    "pulse_wraps": ("meter_id", "last_m3", "wraps"),
    "pulse_state": (
        "meter_id",
        "last_m3",
        "offset_m3",
        "last_at",
        "count_m3",
        "before_last_m3",
        "before_offset_m3",
    ),
    "wmbus_freshness": ("meter_id", "device", "message_counter", "meter_time"),
    "meter_health": ("meter_id", "last_good", "offline_since", "consecutive_failures"),
    "mbus_identities": ("meter_id", "identification", "first_at", "kind"),
}


def is_damage(error: BaseException) -> bool:
    """Whether ``error`` says the file's content is damaged (SQLITE_CORRUPT, SQLITE_NOTADB), as
    opposed to a file that cannot be reached or written (read-only, permissions, full, locked)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and isinstance(code, int) and code & 0xFF in _DAMAGE_CODES


@dataclass(frozen=True, slots=True)
class Salvage:
    """What a damaged spool gave: ``readings_lost_at_most`` is None when it could not be counted (the
    file's header, or its table's last rows, unreadable)."""

    reason: str  # SQLite's words for the damage
    set_aside: Path  # the damaged file, renamed (its -wal and -shm beside it, if it had them)
    at: datetime
    readings_salvaged: int
    readings_lost_at_most: int | None
    events_salvaged: int

    def status(self) -> dict[str, Any]:
        """The health status's ``spool_damaged`` (and the ``spool_damaged`` event's fields)."""
        return {
            "reason": self.reason[:500],
            "set_aside": self.set_aside.name,
            "readings_salvaged": self.readings_salvaged,
            "readings_lost_at_most": self.readings_lost_at_most,
            "events_salvaged": self.events_salvaged,
        }

    def sentence(self) -> str:
        lost = "an unknown number" if self.readings_lost_at_most is None else f"at most {self.readings_lost_at_most}"
        return (
            f"set aside as {self.set_aside.name} (kept beside it); {self.readings_salvaged} readings "
            f"and {self.events_salvaged} events salvaged into a new spool, {lost} readings lost; polling goes on"
        )


def set_aside(spool: Path, at: datetime) -> Path:
    """Rename the spool's file, and its ``-wal`` and ``-shm``, to ``NAME.damaged-YYYYMMDDTHHMMSSZ``
    (``-2``, ``-3``… after it if that is taken); returns the file's new path. The ``-wal`` and ``-shm``
    go first: a crash in between leaves the damaged file where it was (set aside at the next start,
    its WAL's frames then missing from the salvage), never a WAL beside a new spool, which SQLite
    would take as that spool's."""
    stem = f"{spool.name}.damaged-{at.strftime('%Y%m%dT%H%M%SZ')}"
    name, number = stem, 1
    while any(spool.with_name(name + suffix).exists() for suffix in ("", "-wal", "-shm")):
        number += 1
        name = f"{stem}-{number}"
    aside = spool.with_name(name)
    moved: list[str] = []
    try:
        for suffix in ("-wal", "-shm", ""):
            here = spool.with_name(spool.name + suffix)
            if here.exists():
                os.rename(here, aside.with_name(aside.name + suffix))
                moved.append(suffix)
    except OSError:  # those moved go back: the file stays whole, where it was
        for suffix in moved:
            os.rename(aside.with_name(aside.name + suffix), spool.with_name(spool.name + suffix))
        raise
    return aside


def put_back(aside: Path, spool: Path) -> None:
    """Undo :func:`set_aside`: the damaged file back at ``spool``, then its ``-wal`` and ``-shm`` (a
    crash in between leaves its WAL aside, never beside a new spool), for the next start to salvage it.

    A rename refused raises :class:`OSError` saying which files are left aside and what the operator
    must do: rename them back by hand before the gateway starts again, which would otherwise find no
    spool, make a new, empty one, and never salvage them. Before, the bare rename's error said
    neither that the file was the damaged spool's nor that a hand was needed."""
    left = [
        (aside.with_name(aside.name + suffix), spool.with_name(spool.name + suffix))
        for suffix in ("", "-wal", "-shm")
        if aside.with_name(aside.name + suffix).exists()
    ]
    for done, (there, here) in enumerate(left):
        try:
            os.rename(there, here)
        except OSError as error:
            renames = ", ".join(f"{file.name} to {name.name}" for file, name in left[done:])
            raise OSError(
                f"the damaged spool file {there} cannot be put back as {here} ({error.strerror or error}): "
                f"rename {renames} in {spool.parent} by hand before the gateway starts again, else that start "
                "makes a new, empty spool and does not salvage it"
            ) from error


def _columns(damaged: sqlite3.Connection, table: str) -> tuple[str, ...]:
    """The columns of ``table`` this code copies that the damaged file has ((): no such table)."""
    present = {row[1] for row in damaged.execute(f"PRAGMA table_info({table})")}
    return tuple(c for c in _TABLES[table] if c in present)


def _first(damaged: sqlite3.Connection, sql: str, *args: Any) -> int | None:
    """An integer the damaged file answers, or None if it cannot (or has none)."""
    try:
        row = damaged.execute(sql, args).fetchone()
    except sqlite3.DatabaseError as error:
        if not is_damage(error):
            raise
        return None
    return None if row is None or row[0] is None else int(row[0])


@dataclass
class _TableRead:
    rows: list[tuple[Any, ...]]
    unreadable: int | None  # rowids whose lookup failed; None: the table's end could not be found


def _read_table(damaged: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> _TableRead:
    """Every row of ``table`` the damaged file still gives, by rowid ranges, a failing range halved."""
    names = ", ".join(columns)
    low = _first(damaged, f"SELECT min(rowid) FROM {table}")
    high = _first(damaged, "SELECT seq FROM sqlite_sequence WHERE name = ?", table)
    high = max(high or 0, _first(damaged, f"SELECT max(rowid) FROM {table}") or 0) or None
    if high is None and table == "readings":  # its rightmost pages damaged: every id is in its index too
        high = _first(damaged, "SELECT max(id) FROM readings INDEXED BY readings_by_batch")
    if high is None:
        return _read_forward(damaged, table, names)
    rows: list[tuple[Any, ...]] = []
    unreadable = 0
    ranges = [(start, min(start + _RANGE - 1, high)) for start in range(low or 1, high + 1, _RANGE)]
    ranges.reverse()  # a stack: the lowest range on top
    while ranges:
        first, last = ranges.pop()
        try:  # one row by equality: a range's scan steps on past its last row, into the next page
            if first == last:
                rows += damaged.execute(f"SELECT {names} FROM {table} WHERE rowid = ?", (first,)).fetchall()
            else:
                rows += damaged.execute(
                    f"SELECT {names} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid", (first, last)
                ).fetchall()
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            if first == last:
                unreadable += 1
                continue
            middle = (first + last) // 2
            ranges += [(middle + 1, last), (first, middle)]
    return _TableRead(rows, unreadable)


def _read_forward(damaged: sqlite3.Connection, table: str, names: str) -> _TableRead:
    """A table whose last rowid cannot be read: its rows in order up to the first that fails."""
    rows: list[tuple[Any, ...]] = []
    after = -(2**63)
    try:
        while chunk := damaged.execute(
            f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, _RANGE)
        ).fetchall():
            rows += [row[1:] for row in chunk]
            after = chunk[-1][0]
    except sqlite3.DatabaseError as error:
        if not is_damage(error):
            raise
    return _TableRead(rows, None)


def _is_reading(body: Any) -> bool:
    """A stored reading's text that still says whose and when: what the collector keys it by."""
    if not isinstance(body, str):
        return False
    try:
        reading = json.loads(body)
    except ValueError:
        return False
    return isinstance(reading, dict) and isinstance(reading.get("meter_id"), str) and isinstance(reading.get("ts"), str)


def _has_wal(damaged: Path) -> bool:
    """Whether the set-aside file has a ``-wal`` that may hold committed pages (one not empty)."""
    wal = damaged.with_name(damaged.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


def _open_read_only(damaged: Path) -> sqlite3.Connection:
    """The set-aside file, read-only, nothing written to it or its ``-wal``. With no ``-wal`` (or an
    empty one) it is opened ``immutable``, and nothing is made beside it. Before, ``mode=ro`` alone
    made SQLite create an empty ``-wal`` and a 32 KiB ``-shm`` beside the file (a spool is in WAL
    mode): a salvage that then failed put them back beside the spool as the damaged file's own
    (:func:`put_back`), and where the new spool's ``-wal`` could not be removed, that ``-wal`` stopped
    the put-back, and an operator was asked to rename the files by hand. With a ``-wal`` that holds
    pages, ``mode=ro`` reads its committed frames (``immutable`` ignores the ``-wal``: readings
    committed only there would be lost); SQLite then makes a ``-shm`` if there was none, which
    :func:`_remove_made` removes once the file is read.
    ``writable_schema`` (nothing can be written: read-only) makes SQLite read a file shorter than its
    header says, as far as it goes, where it refused the whole file as malformed."""
    immutable = "" if _has_wal(damaged) else "&immutable=1"
    db = sqlite3.connect(f"file:{quote(str(damaged))}?mode=ro{immutable}", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA writable_schema = ON")
    except sqlite3.DatabaseError as error:  # its header spoilt: its pages may still be read (spool_pages)
        if not is_damage(error):
            db.close()
            raise
    return db


def _beside(damaged: Path) -> set[Path]:
    """The set-aside file's ``-wal`` and ``-shm`` that are there now."""
    return {file for suffix in ("-wal", "-shm") if (file := damaged.with_name(damaged.name + suffix)).exists()}


def _remove_made(damaged: Path, there: set[Path]) -> None:
    """Remove the ``-wal`` or ``-shm`` a read made beside the set-aside file (those not in ``there``):
    the file is left with exactly the companions it was set aside with."""
    for file in _beside(damaged) - there:
        try:
            file.unlink()
        except OSError as error:  # said, not raised: what the salvage read is read
            log.warning("spool %s: its %s, made by reading it, not removed (%s)", damaged, file.name, error)


def _rows_of(damaged: sqlite3.Connection, table: str) -> tuple[tuple[str, ...], _TableRead] | None:
    try:
        columns = _columns(damaged, table)
    except sqlite3.DatabaseError as error:  # the schema unreadable
        if not is_damage(error):
            raise
        return None
    if not columns:
        return None
    return columns, _read_table(damaged, table, columns)


def salvage_into(damaged: Path, spool: sqlite3.Connection) -> tuple[int, int | None, int]:
    """Copy what the set-aside file ``damaged`` still gives into the new ``spool`` (just made, its
    schema in place), in the caller's transaction. Returns (readings salvaged, readings lost at most
    (None: not known), events salvaged)."""
    on_pages = None if _has_wal(damaged) else readings_on_pages(damaged.read_bytes())
    there = _beside(damaged)
    try:
        source = _open_read_only(damaged)
    except sqlite3.Error as error:
        _remove_made(damaged, there)
        log.error("spool %s: not opened to salvage it (%s)", damaged, error)
        return 0, None, 0
    try:
        return _copy(source, spool, on_pages or {})
    finally:
        source.close()
        _remove_made(damaged, there)


def _copy(
    source: sqlite3.Connection, spool: sqlite3.Connection, on_pages: dict[int, tuple[str, int | None]]
) -> tuple[int, int | None, int]:
    """``on_pages``: the readings found on the file's pages (gateway.spool_pages), taken for those
    the b-tree no longer leads to."""
    readings = events = 0
    lost: int | None = None
    for table in _TABLES:
        found = _rows_of(source, table)
        if found is None and table == "readings":
            found = _TABLES["readings"], _TableRead([], None)
        if found is None:
            continue
        columns, read = found
        from_pages = 0
        if table == "readings" and on_pages:
            through_tree = {row[0] for row in read.rows}
            more = [(i, body, seq) for i, (body, seq) in sorted(on_pages.items()) if i not in through_tree]
            read.rows += more
            from_pages = len(more)
        insert = f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        kept = 0
        for row in read.rows:
            if table == "readings" and not _is_reading(row[1]):
                continue
            try:
                spool.execute(insert, row)
            except sqlite3.IntegrityError:  # a state row an earlier version kept with a NULL this one refuses
                continue
            kept += 1
        if table == "readings":
            readings = kept
            total = _first(source, "SELECT count(*) FROM readings")
            if total is not None:
                lost = max(total - kept, 0)
            elif read.unreadable is not None:
                lost = max(read.unreadable + len(read.rows) - from_pages - kept, 0)
        elif table == "messages":
            events = kept
    # AUTOINCREMENT goes on above the old file's ids (and batch_seq above its batches, by counters)
    for table in ("readings", "messages"):
        old = _first(source, "SELECT seq FROM sqlite_sequence WHERE name = ?", table) or 0
        spool.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (old, table))
        spool.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS "
            "(SELECT 1 FROM sqlite_sequence WHERE name = ?)",
            (table, old, table),
        )
    sealed = spool.execute("SELECT coalesce(max(batch_seq), 0) + 1 FROM readings").fetchone()[0]
    spool.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'next_batch_seq'", (sealed,))
    return readings, lost, events
