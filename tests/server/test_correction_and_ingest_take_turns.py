"""A person's correction and the collector's storing of new reads of the same meter take turns
(collector.meter_turns), on real connections to the real database.

Before, a correction's check read the meter's neighbours while a batch of arriving reads was being
written, its read not committed and so not seen: a value of 101.000 half an hour after the newest read
(100.500) was judged the meter's newest and taken, and the batch's 100.600 an hour after it committed
the same moment, an unconfirmed step back no one was asked about. Now the correction waits for the
batch, sees its read and refuses the value (nothing stored); and a batch arriving while a correction
is under way waits for it to commit.

A correction refreshes its meter's consumption before it commits, and waits there for a refresh under
way (a VEE round's, seconds long). It no longer waits holding its meter's turn (the collector's writer
stalled behind it): it gives way, and is judged again once the refresh is done, against the reads
stored meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from collector.batch_parser import ReadingRow
from collector.meter_turns import REFRESHES_KEY
from collector.store import ReadingStore
from collector.vee.editing import OutOfSequence, substitute_reading
from server.meters.repository import register_meters
from tests.lock_waits import lock_waits

METER = "WM-TURNS"
NEWEST = datetime(2026, 11, 20, 12, tzinfo=UTC)
ARRIVING = NEWEST + timedelta(hours=1)  # the batch's read: 100.600
SUPPLIED = NEWEST + timedelta(minutes=30)  # the person's value between them: 101.000


@pytest.fixture
def meter(migrated_database_url: str) -> Iterator[str]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        register_meters(conn, [(METER, "D1", "customer")])
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for h in range(24):
                copy.write_row((METER, NEWEST - timedelta(hours=23 - h), Decimal("100.270") + Decimal("0.010") * h))
        # as the collector leaves a meter it has stored reads of (a row neither side need lock again)
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = %s", (METER,))
    yield migrated_database_url


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["result"] = work()
        except Exception as error:
            done["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def _until(url: str, waiting_on: str, thread: threading.Thread) -> bool:
    """Whether a session of this database (not another pytest worker's: tests/lock_waits.py) comes to
    wait for a lock of ``waiting_on`` (``advisory``, ``relation``) within 10 s; False as soon as
    ``thread`` ends instead."""
    with psycopg.connect(url, autocommit=True) as monitor:
        for _ in range(200):
            if any(locktype == waiting_on for _, locktype, _, _ in lock_waits(monitor)):
                return True
            if not thread.is_alive():
                return False
            time.sleep(0.05)
    raise AssertionError(f"nothing came to wait on a {waiting_on} lock, and the thread did not end")


def _arriving_batch(url: str) -> Callable[[], Any]:
    """The collector's writer storing the 100.600 read (and a dead letter, written after the reads)."""

    def write() -> Any:
        store = ReadingStore(url)
        try:
            row: ReadingRow = (METER, ARRIVING.isoformat(), "100.600", None, None, [], "GW-1", 1)
            return store.write([row], dead_letters=[("aquami/v1/x", "test", b"x")])
        finally:
            store.close()

    return write


def _supply(
    url: str, written: threading.Event | None = None, hold: threading.Event | None = None
) -> Callable[[], None]:
    """A person supplying 101.000 half an hour after the newest read; with ``hold``, the transaction
    is kept open once the value is written (``written`` set) until ``hold`` is set."""

    def supply() -> None:
        with psycopg.connect(url) as conn, conn.transaction():
            substitute_reading(conn, METER, SUPPLIED, Decimal("101.000"), by="Bea", reason="site visit")
            if written is not None and hold is not None:
                written.set()
                hold.wait(10)

    return supply


def _stored(url: str) -> list[tuple[datetime, Decimal, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT ts, volume_m3, quality FROM readings WHERE meter_id = %s AND ts > %s ORDER BY ts", (METER, NEWEST)
        ).fetchall()
    return [(ts, volume, quality) for ts, volume, quality in rows]


def test_a_correction_waits_for_a_batch_under_way_and_is_judged_against_its_read(meter: str) -> None:
    with psycopg.connect(meter) as blocker:  # holds the batch after its reads are written, before it commits
        blocker.execute("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")
        batch, stored = _in_thread(_arriving_batch(meter))
        assert _until(meter, "relation", batch), stored  # the batch waits on dead_letters, its read written
        correction, judged = _in_thread(_supply(meter))
        waited = _until(meter, "advisory", correction)
        blocker.rollback()  # the batch goes on and commits
    batch.join(10)
    correction.join(10)
    assert "error" not in stored, stored
    assert waited, f"the correction did not wait for the batch: {judged}"
    assert isinstance(judged.get("error"), OutOfSequence), judged
    assert "above the reading after it (" in str(judged["error"]) and "100.600 m³" in str(judged["error"])
    assert _stored(meter) == [(ARRIVING, Decimal("100.600"), "actual")]  # nothing of the refused value


def test_a_batch_waits_for_a_correction_under_way(meter: str) -> None:
    written, hold = threading.Event(), threading.Event()
    correction, judged = _in_thread(_supply(meter, written, hold))
    assert written.wait(10), judged  # judged against no read after it: taken, not committed yet
    batch, stored = _in_thread(_arriving_batch(meter))
    waited = _until(meter, "advisory", batch)
    hold.set()
    correction.join(10)
    batch.join(10)
    assert "error" not in judged and "error" not in stored, (judged, stored)
    assert waited, "the batch did not wait for the correction"
    assert _stored(meter) == [(SUPPLIED, Decimal("101.000"), "substituted"), (ARRIVING, Decimal("100.600"), "actual")]


def test_a_correction_that_gave_way_to_a_refresh_is_judged_against_the_read_stored_meanwhile(meter: str) -> None:
    """A refresh holds the consumption refreshes' turn; a person supplies 101.000 half an hour after
    the newest read (in order then: no read after it) and comes to wait for the turn; the batch storing
    the 100.600 read an hour after the newest commits meanwhile. The refresh commits: the correction is
    judged again, against 100.600, and refused; nothing of it is stored."""
    with psycopg.connect(meter) as refresh:
        refresh.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESHES_KEY,))
        correction, judged = _in_thread(_supply(meter))
        assert _until(meter, "advisory", correction), judged  # waits for the refresh
        batch, stored = _in_thread(_arriving_batch(meter))
        batch.join(10)
        stored_meanwhile = not batch.is_alive()
        refresh.rollback()
    correction.join(10)
    batch.join(10)
    assert stored_meanwhile, "the batch waited for the correction waiting for the refresh"
    assert "error" not in stored, stored
    assert isinstance(judged.get("error"), OutOfSequence), judged
    assert "100.600 m³" in str(judged["error"])
    assert _stored(meter) == [(ARRIVING, Decimal("100.600"), "actual")]
