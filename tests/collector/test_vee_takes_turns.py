"""A VEE batch and a person's correction of one of its meters take turns (collector.meter_turns), on
real connections to the real database.

Before, VEE took no turn: a batch loaded a meter's reads while a person's value in one of its gaps
was written but not committed, estimated the gap without it, and wrote estimates around it that it
had never seen: 100.210 an hour after the person's 100.230, the register stepping back. Now VEE
waits for the correction under way and estimates around its value; and a correction arriving while
a VEE batch is under way waits for the batch to commit.

A correction waiting for a VEE batch once queued for its meter's turn (a bucket's advisory lock,
exclusive, held shared by the batch), and PostgreSQL grants no shared lock while an exclusive request
waits before it: the collector's writer, storing a read of any meter of that bucket, waited behind the
correction for the rest of the batch (10 s measured, benchmarks/vee_correction_wait.py). Now the
correction waits for the batch on a turn ingest does not take, and the read is stored meanwhile; the
correction is judged against it once the batch commits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from collector.batch_parser import ReadingRow
from collector.meter_turns import KEY, VEE_KEY
from collector.store import ReadingStore
from collector.vee.editing import substitute_reading
from collector.vee.register_order import OutOfSequence
from collector.vee.runner import run_vee
from tests.lock_waits import lock_waits, waits_of
from tests.server.test_correction_and_ingest_take_turns import _in_thread, _until

METER = "WM-VEE-TURNS"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
HOURS = [NOW - timedelta(hours=h) for h in range(30, 0, -1)]
GAP = HOURS[18:24]  # six hours the meter did not report: 100.170 before, 100.240 after
SUPPLIED = HOURS[20]  # a site visit's 100.230: most of the gap's water went early
VALUE = Decimal("100.230")
ARRIVING = NOW  # the meter's next read, 100.300, an hour after its newest (100.290)
WRITER = "aquami-test-writer"  # the collector's writer's session, by name


@pytest.fixture
def meter(migrated_database_url: str) -> Iterator[str]:
    store = ReadingStore(migrated_database_url)
    try:
        rows: list[ReadingRow] = [
            (METER, t.isoformat(), f"{100 + 0.01 * i:.3f}", None, None, [], "gw", i) for i, t in enumerate(HOURS)
        ]
        store.write([row for row in rows if datetime.fromisoformat(row[1]) not in GAP])
    finally:
        store.close()
    yield migrated_database_url


def _vee(url: str) -> Callable[[], Any]:
    """A VEE run over the meter's hours, as a round runs it (a connection not in autocommit)."""

    def run() -> Any:
        with psycopg.connect(url) as conn:
            report = run_vee(conn, HOURS[0], NOW, now=NOW)
            conn.commit()
            return report

    return run


def _supply(
    url: str, written: threading.Event | None = None, hold: threading.Event | None = None
) -> Callable[[], None]:
    """A person supplying 100.230 in the gap; with ``hold``, the transaction is kept open once the
    value is written (``written`` set) until ``hold`` is set."""

    def supply() -> None:
        with psycopg.connect(url) as conn, conn.transaction():
            substitute_reading(conn, METER, SUPPLIED, VALUE, by="Bea", reason="site visit")
            if written is not None and hold is not None:
                written.set()
                hold.wait(30)

    return supply


def _register(url: str) -> list[tuple[datetime, Decimal, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT ts, volume_m3, quality FROM readings WHERE meter_id = %s ORDER BY ts", (METER,)
        ).fetchall()
    return [(ts, volume, quality) for ts, volume, quality in rows]


def test_vee_waits_for_a_correction_under_way_and_estimates_around_its_value(meter: str) -> None:
    written, hold = threading.Event(), threading.Event()
    correction, judged = _in_thread(_supply(meter, written, hold))
    try:
        assert written.wait(10), judged  # the value is written, not committed
        vee, ran = _in_thread(_vee(meter))
        waited = _until(meter, "advisory", vee)
    finally:
        hold.set()
    correction.join(10)
    vee.join(30)
    assert "error" not in judged and "error" not in ran, (judged, ran)
    assert waited, f"VEE did not wait for the correction: {ran}"
    register = _register(meter)
    assert (SUPPLIED, VALUE, "substituted") in register
    assert [ts for ts, _, quality in register if quality == "estimated"] == [t for t in GAP if t != SUPPLIED]
    volumes = [volume for _, volume, _ in register]
    assert volumes == sorted(volumes), register  # no estimate steps back from the person's value


def test_a_correction_waits_for_a_vee_batch_under_way(meter: str) -> None:
    with psycopg.connect(meter) as blocker:  # holds VEE's batch after its load, at its first write of flags
        blocker.execute("LOCK TABLE vee_flags IN ACCESS EXCLUSIVE MODE")
        vee, ran = _in_thread(_vee(meter))
        assert _until(meter, "relation", vee), ran
        correction, judged = _in_thread(_supply(meter))
        waited = _until(meter, "advisory", correction)
        blocker.rollback()  # VEE goes on and commits its estimates
    vee.join(30)
    correction.join(10)
    assert "error" not in ran and "error" not in judged, (ran, judged)
    assert waited, f"the correction did not wait for VEE: {judged}"
    # the person's value replaced VEE's estimate of its hour, written before it
    assert (SUPPLIED, VALUE, "substituted") in _register(meter)


def _arriving_read(url: str, dead_letter: bool = False) -> Callable[[], Any]:
    """The collector's writer (its session named :data:`WRITER`) storing the meter's next read, 100.300
    (with ``dead_letter``, and a dead letter, written after the reads)."""

    def write() -> Any:
        store = ReadingStore(make_conninfo(url, application_name=WRITER))
        letters = [("aquami/v1/x", "test", b"x")] if dead_letter else []
        try:
            row: ReadingRow = (METER, ARRIVING.isoformat(), "100.300", None, None, [], "gw", len(HOURS))
            return store.write([row], dead_letters=letters)
        finally:
            store.close()

    return write


def _supply_at(url: str, ts: datetime, value: Decimal) -> Callable[[], None]:
    def supply() -> None:
        with psycopg.connect(url) as conn, conn.transaction():
            substitute_reading(conn, METER, ts, value, by="Bea", reason="site visit")

    return supply


def _held_up(url: str, thread: threading.Thread) -> list[str]:
    """Whether the writer's session (:data:`WRITER`) comes to wait for a lock before ``thread``
    (storing its read) ends: what it waits for, and the chain of sessions holding it up; empty once
    the thread ends without. The read is committed when the thread ends: waited for, not timed."""
    with psycopg.connect(url, autocommit=True) as monitor:
        for _ in range(400):
            if not thread.is_alive():
                return []
            if waits := waits_of(monitor, WRITER):
                return waits
            thread.join(0.05)
    raise AssertionError("the writer neither stored its read nor came to wait for a lock in 20 s")


def test_arriving_reads_are_not_held_up_by_a_correction_waiting_for_a_vee_batch(meter: str) -> None:
    """A VEE batch holds the meter's turn (held at its first write of flags, its reads loaded); a person
    supplies 101.000 half an hour after the meter's newest read (100.290, no read after it) and waits for
    the batch; the collector's writer stores the meter's next read (100.300, an hour after the newest)
    meanwhile, waiting for neither. The batch commits; the correction is judged against the read stored
    meanwhile and refused; the batch's estimates stand."""
    with psycopg.connect(meter) as blocker:
        blocker.execute("LOCK TABLE vee_flags IN ACCESS EXCLUSIVE MODE")
        vee, ran = _in_thread(_vee(meter))
        correction: threading.Thread | None = None
        try:
            assert _until(meter, "relation", vee), ran  # the batch holds its turns, its reads loaded
            correction, judged = _in_thread(_supply_at(meter, ARRIVING - timedelta(minutes=30), Decimal("101.000")))
            assert _until(meter, "advisory", correction), judged  # the correction waits for the batch
            writer, stored = _in_thread(_arriving_read(meter))
            held_up = _held_up(meter, writer)
        finally:
            blocker.rollback()  # the batch goes on and commits
            vee.join(30)
            if correction is not None:
                correction.join(30)
    writer.join(30)
    assert not held_up, "the writer waited behind the correction waiting for the VEE batch:\n" + "\n".join(held_up)
    assert "error" not in ran and "error" not in stored, (ran, stored)
    assert isinstance(judged.get("error"), OutOfSequence), judged  # judged against the read stored meanwhile
    assert "100.300 m³" in str(judged["error"])
    register = _register(meter)
    assert (ARRIVING, Decimal("100.300"), "actual") in register
    assert not any(volume == Decimal("101.000") for _, volume, _ in register)
    assert [ts for ts, _, quality in register if quality == "estimated"] == GAP  # VEE's estimates of the gap


def _waiting_for(url: str, key: int, thread: threading.Thread) -> bool:
    """Whether a session of this database comes to wait for an advisory lock of first key ``key`` (a
    bucket's: :data:`KEY`, :data:`VEE_KEY`) within 10 s; False as soon as ``thread`` ends instead."""
    with psycopg.connect(url, autocommit=True) as monitor:
        for _ in range(200):
            if any(locktype == "advisory" and classid == key for _, locktype, classid, _ in lock_waits(monitor)):
                return True
            thread.join(0.05)
            if not thread.is_alive():
                return False
    raise AssertionError(f"nothing came to wait on an advisory lock of {key:#x}, and the thread did not end")


def test_a_vee_batch_waits_for_a_correction_waiting_for_arriving_reads_and_estimates_around_its_value(
    meter: str,
) -> None:
    """A guard of the turns' order: the collector's writer holds the meter's turn (its read stored, held
    at its dead letter); a person supplies 100.230 in the gap and, holding VEE's turn of the meter,
    waits for the writer on the meter's turn; a VEE batch starts and waits for the correction on VEE's
    turn, holding none of the meter's. The writer commits: the correction, then the batch, and no
    deadlock; the batch estimates the gap around the person's value."""
    with psycopg.connect(meter) as blocker:
        blocker.execute("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")
        writer, stored = _in_thread(_arriving_read(meter, dead_letter=True))
        correction: threading.Thread | None = None
        vee: threading.Thread | None = None
        try:
            assert _until(meter, "relation", writer), stored  # the read written, the meter's turn held
            correction, judged = _in_thread(_supply(meter))
            assert _waiting_for(meter, KEY, correction), judged  # VEE's turn held, the meter's waited for
            vee, ran = _in_thread(_vee(meter))
            assert _waiting_for(meter, VEE_KEY, vee), ran
        finally:
            blocker.rollback()
            writer.join(30)
            for thread in (correction, vee):
                if thread is not None:
                    thread.join(30)
    assert "error" not in stored and "error" not in judged and "error" not in ran, (stored, judged, ran)
    register = _register(meter)
    assert (SUPPLIED, VALUE, "substituted") in register
    assert (ARRIVING, Decimal("100.300"), "actual") in register
    assert [ts for ts, _, quality in register if quality == "estimated"] == [t for t in GAP if t != SUPPLIED]
    volumes = [volume for _, volume, _ in register]
    assert volumes == sorted(volumes), register
