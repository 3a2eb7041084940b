"""The spool gives the space an outage's backlog took back to the filesystem once it is delivered.
It kept the file it grew to: 200,000 readings drained left 46.6 MiB, 41.9 MiB of it free pages, the
same after a restart, and a gateway whose disk the outage filled stayed full for its logs."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path

import pytest

import gateway.spool as spool_module
from gateway.spool import Spool

MIB = 1024 * 1024


def reading(n: int) -> dict[str, object]:
    return {"meter_id": f"WM-{n:05d}", "ts": "2026-12-05T10:00:00Z", "volume_m3": "123.456", "note": "x" * 200}


def _files(path: Path) -> int:
    """The spool's bytes on disk: its database and its WAL."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _free_bytes(spool: Spool) -> int:
    page_size, _, free_pages = spool._pages()
    return page_size * free_pages


def _fill(spool: Spool, readings: int) -> None:
    for start in range(0, readings, 1000):
        spool.append([reading(n) for n in range(start, start + 1000)])


def _drain(spool: Spool) -> int:
    """Seal and acknowledge everything, as a publisher does; how many acknowledgements it took."""
    acks = 0
    while batches := spool.sealed_batches(limit=4) or spool.seal_many(500, 4):
        spool.acknowledge_many([b.batch_seq for b in batches])
        acks += 1
    return acks


def _statements(spool: Spool, into: list[str]) -> None:
    spool._db.set_trace_callback(into.append)


def test_a_drained_backlog_gives_its_space_back_a_few_times_not_on_every_acknowledgement(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, reclaim_bytes=1 * MIB)
    _fill(spool, 30_000)
    full = _files(path)
    assert full > 8 * MIB
    statements: list[str] = []
    _statements(spool, statements)
    acks = _drain(spool)
    reclaims = [s for s in statements if "incremental_vacuum" in s]
    assert 1 <= len(reclaims) <= full // MIB < acks  # once per MiB freed, at most
    assert spool.depth() == 0 and _free_bytes(spool) < 1 * MIB
    spool.close()
    spool = Spool(path, reclaim_bytes=1 * MIB)
    assert _files(path) < 2 * MIB  # was the whole backlog's size, for good
    spool.close()


def _old_spool(path: Path, readings: int, delivered: int) -> None:
    """A spool file as written before auto_vacuum was set: ``readings`` spooled, the first
    ``delivered`` of them sealed and gone, the rest waiting (two of them sealed as batch 1)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(spool_module._SCHEMA)
    with db:  # one transaction, not one commit (and fsync) per row: the file written is the same
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO readings (body) VALUES (?)", [(f'{{"n":{n},"pad":"{"x" * 200}"}}',) for n in range(readings)]
        )
    db.execute("DELETE FROM readings WHERE id <= ?", (delivered,))
    db.execute("UPDATE readings SET batch_seq = 1 WHERE id IN (SELECT id FROM readings ORDER BY id LIMIT 2)")
    db.execute("UPDATE counters SET value = 2 WHERE name = 'next_batch_seq'")
    assert db.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    db.close()


def test_an_older_spool_file_is_rewritten_as_it_opens_keeping_what_it_holds(tmp_path: Path, caplog) -> None:
    """The rewrite is said with the file's size after it and before (before, only the size before, as
    "(5.2 MiB)", which read as what was given back)."""
    caplog.set_level(logging.INFO, logger="gateway.spool")
    path = tmp_path / "spool.sqlite"
    _old_spool(path, readings=20_000, delivered=19_000)
    before = _files(path)
    spool = Spool(path)
    (said,) = [r.getMessage() for r in caplog.records if "rewritten to give freed space back" in r.getMessage()]
    assert re.search(r"\(\d+\.\d (KiB|MiB), was \d+\.\d MiB\)$", said), said
    assert spool._db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
    assert spool.depth() == 1000 and spool.next_batch_seq() == 2
    assert [b.batch_seq for b in spool.sealed_batches()] == [1]
    assert [r["n"] for r in spool.sealed_batches()[0].readings] == [19_000, 19_001]
    spool.close()
    spool = Spool(path)
    assert _files(path) < before / 4
    spool.close()


def test_an_older_spool_too_large_to_rewrite_at_once_is_rewritten_once_drained(tmp_path: Path, monkeypatch) -> None:
    """The rewrite (VACUUM) copies what the spool holds: one holding an outage's backlog waits until
    its deliveries have freed enough (here: the bound set low)."""
    path = tmp_path / "spool.sqlite"
    _old_spool(path, readings=20_000, delivered=0)
    monkeypatch.setattr(spool_module, "VACUUM_LIVE_MAX_BYTES", 1 * MIB)
    spool = Spool(path, reclaim_bytes=1 * MIB)
    assert spool._db.execute("PRAGMA auto_vacuum").fetchone() == (0,)  # too large now
    _drain(spool)
    assert spool._db.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    spool.close()
    spool = Spool(path)
    assert spool.depth() == 0 and _files(path) < 2 * MIB
    spool.close()


def test_short_of_room_the_spool_delivers_and_gives_back_nothing_until_the_disk_has_room(
    tmp_path: Path, monkeypatch
) -> None:
    """Giving pages back moves pages through the WAL: on a full disk (less free than the reserve)
    it is not tried, and acknowledged batches leave all the same; once there is room, the next
    acknowledgement gives the space back."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, reclaim_bytes=1 * MIB)
    _fill(spool, 20_000)
    monkeypatch.setattr(Spool, "_disk_free", lambda self: spool_module.RESERVE_BYTES // 2)
    statements: list[str] = []
    _statements(spool, statements)
    batches = spool.seal_many(500, 30)
    assert spool.acknowledge_many([b.batch_seq for b in batches]) == 15_000 and spool.depth() == 5000
    assert not [s for s in statements if "incremental_vacuum" in s]
    assert _free_bytes(spool) > 2 * MIB
    monkeypatch.undo()
    batch = spool.seal(500)
    assert batch is not None and spool.acknowledge(batch.batch_seq) == 500
    assert _free_bytes(spool) < 1 * MIB
    spool.close()


def test_giving_space_back_failing_leaves_delivery_as_it_was(tmp_path: Path, caplog) -> None:
    """A failure giving pages back (a disk filled meanwhile; here SQLite's authorizer refusing it)
    is logged: the acknowledged batches are gone all the same, and the spool goes on."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, reclaim_bytes=1 * MIB)
    _fill(spool, 10_000)

    def refuse_reclaim(action: int, arg1: str | None, *_: object) -> int:
        refused = action == sqlite3.SQLITE_PRAGMA and arg1 == "incremental_vacuum"
        return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

    spool._db.set_authorizer(refuse_reclaim)
    batches = spool.seal_many(500, 20)
    assert spool.acknowledge_many([b.batch_seq for b in batches]) == 10_000 and spool.depth() == 0
    assert "freed space not given back" in caplog.text
    assert not spool._db.in_transaction
    assert spool.append([reading(1)]).stored == 1 and spool.depth() == 1
    spool.close()


@pytest.mark.parametrize("size", [0, 100])
def test_a_new_spool_gives_space_back_from_the_start(tmp_path: Path, size: int) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    _fill(spool, size)
    assert spool._db.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    spool.close()
    assert os.path.exists(path)
