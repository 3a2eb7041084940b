"""A VEE batch PostgreSQL rolls back for a deadlock is run again, and the round goes on with its
other batches. On real connections to the real database, with a real deadlock.

Before, ``run_vee`` raised on the first deadlock: the batches after it, the round's consumption
refresh and its late_readings notes waited for the next round, an hour later."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg
import pytest

from collector.vee.runner import VeeReport, _run_what_fits
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread

METER = "WM-VEE-CONFLICT"
EARLY, LATE = datetime(2026, 3, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, 2, tzinfo=UTC)
LOCK = "SELECT 1 FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE"


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES (%s)", (METER,))
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, 10.0), (%s, %s, 10.1)",
            (METER, EARLY, METER, LATE),
        )


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_batch_rolled_back_for_a_deadlock_is_run_again_and_the_round_goes_on(
    migrated_database_url: str, autocommit: bool
) -> None:
    """The first batch's first run locks the 01:00 read, then asks for the 02:00 one, held by
    another session that has asked for 01:00 meanwhile: a real deadlock, in which the batch (its
    session's deadlock_timeout the default 1 s, the other's 30 s) is the side rolled back. Its run
    again, and the second batch, are counted in the round's report."""
    url = migrated_database_url
    _seed(url)
    runs: list[list[str]] = []
    with psycopg.connect(url, autocommit=autocommit) as conn, psycopg.connect(url) as other:
        other.execute("SET deadlock_timeout = '30s'")
        other.execute(LOCK, (METER, LATE))

        def take_early_then_let_go() -> None:
            other.execute(LOCK, (METER, EARLY))
            other.rollback()

        def run(meters: list[str]) -> VeeReport:
            runs.append(meters)
            with conn.transaction() if autocommit else conn.cursor():
                if len(runs) == 1:  # the first run: deadlocked with the other session
                    conn.execute(LOCK, (METER, EARLY))
                    waiter, waited = _in_thread(take_early_then_let_go)
                    _waiting_on_rows(url, 1)
                    try:
                        conn.execute(LOCK, (METER, LATE))
                    finally:
                        waiter.join(30)
                        assert "error" not in waited, waited
                else:
                    conn.execute(LOCK, (METER, LATE))
            return VeeReport(readings=len(meters))

        report = VeeReport()
        _run_what_fits(conn, report, ["A", "B"], run, lambda meter: None)
        _run_what_fits(conn, report, ["C"], run, lambda meter: None)
        if not autocommit:
            conn.commit()
    assert runs == [["A", "B"], ["A", "B"], ["C"]]
    assert report.readings == 3


def test_a_batch_that_keeps_conflicting_is_left_for_the_next_round_and_said(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch that conflicts at every run (a serialization failure each time: the database's own
    error, raised by the database) is run 3 times, then left for the next round with a warning;
    the next batch runs."""
    caplog.set_level(logging.INFO)
    runs: list[list[str]] = []
    with psycopg.connect(migrated_database_url) as conn:

        def run(meters: list[str]) -> VeeReport:
            runs.append(meters)
            if meters == ["A"]:
                conn.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = 'serialization_failure'; END $$"
                )
            return VeeReport(readings=1)

        report = VeeReport()
        _run_what_fits(conn, report, ["A"], run, lambda meter: None)
        _run_what_fits(conn, report, ["B"], run, lambda meter: None)
    assert runs == [["A"]] * 3 + [["B"]]
    assert (report.readings, report.batches_left, report.meters_left) == (1, 1, 1)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "left for the next round" in warned[0] and "could not serialize" in warned[0]
