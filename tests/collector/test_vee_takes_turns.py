"""A VEE batch and a person's correction of one of its meters take turns (collector.meter_turns), on
real connections to the real database.

Before, VEE took no turn: a batch loaded a meter's reads while a person's value in one of its gaps
was written but not committed, estimated the gap without it, and wrote estimates around it that it
had never seen: 100.210 an hour after the person's 100.230, the register stepping back. Now VEE
waits for the correction under way and estimates around its value; and a correction arriving while
a VEE batch is under way waits for the batch to commit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from collector.batch_parser import ReadingRow
from collector.store import ReadingStore
from collector.vee.editing import substitute_reading
from collector.vee.runner import run_vee
from tests.server.test_correction_and_ingest_take_turns import _in_thread, _until

METER = "WM-VEE-TURNS"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
HOURS = [NOW - timedelta(hours=h) for h in range(30, 0, -1)]
GAP = HOURS[18:24]  # six hours the meter did not report: 100.170 before, 100.240 after
SUPPLIED = HOURS[20]  # a site visit's 100.230: most of the gap's water went early
VALUE = Decimal("100.230")


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
