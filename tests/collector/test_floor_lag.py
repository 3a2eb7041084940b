"""A transaction left open holds back the open-transactions floor: detection says so, once, naming it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest

from collector.detection_job import DetectionJobConfig, run_detection_once
from collector.floor_lag import FloorHolder, FloorLagWatch
from tests.collector.test_detection_job import START, fleet, store_hours

#: The tests' lag: a second, where a deployment's default is an hour.
LAG = timedelta(seconds=1)


@contextmanager
def left_idle_in_a_transaction(url: str, application_name: str) -> Iterator[psycopg.Connection]:
    """A session that began a transaction and does nothing more (a psql left open), held until the
    floor lags it by more than :data:`LAG`."""
    with psycopg.connect(url, application_name=application_name) as session:
        session.execute("SELECT 1")  # the transaction begins, and stays open: idle in transaction
        time.sleep(LAG.total_seconds() + 0.5)
        yield session
        session.rollback()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "collector.detection_job"
    ]


def test_a_session_left_idle_in_a_transaction_is_named_once_in_one_warning(migrated_database_url, caplog):
    """A psql left open in a transaction holds the floor back, so every run read ever more readings as
    arrived, and nothing said why. A run now logs one warning line naming the session (its pid,
    application_name and state), once: the runs after it, held back by the same session, say
    nothing more. Another session holding it is named in its turn. Below the lag, nothing."""
    meters = fleet()[:3]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(migrated_database_url, meters, 0, 9 * 24)
    config = DetectionJobConfig(history_days=9, floor_lag_warning=LAG)
    caplog.set_level(logging.WARNING, logger="collector.detection_job")
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        run_detection_once(conn, START + timedelta(days=9), config)
        assert _warnings(caplog) == []  # nothing held open: nothing said

        with left_idle_in_a_transaction(migrated_database_url, "psql-left-open") as idle:
            pid = idle.info.backend_pid
            (began,) = conn.execute("SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() or ()
            for hour in (1, 2, 3):
                run_detection_once(conn, START + timedelta(days=9, hours=hour), config)
            recorded = conn.execute("SELECT arrivals_from FROM detection_runs ORDER BY run_at DESC LIMIT 1")
            assert recorded.fetchone() == (began,)  # held back, as it should be
            said = _warnings(caplog)
            assert len(said) == 1, said
            (line,) = said
            assert "\n" not in line
            for part in (f"pid {pid}", "application_name 'psql-left-open'", "state idle in transaction"):
                assert part in line, line
            assert f"pg_terminate_backend({pid})" in line and "idle_in_transaction_session_timeout" in line

        with left_idle_in_a_transaction(migrated_database_url, "crashed-client") as other:
            run_detection_once(conn, START + timedelta(days=9, hours=4), config)
            run_detection_once(conn, START + timedelta(days=9, hours=5), config)
            said = _warnings(caplog)
            assert len(said) == 2, said
            assert f"pid {other.info.backend_pid}" in said[1] and "'crashed-client'" in said[1]

        run_detection_once(conn, START + timedelta(days=9, hours=6), config)  # gone: nothing more
        assert len(_warnings(caplog)) == 2


def test_a_floor_lag_warning_setting_must_be_positive() -> None:
    with pytest.raises(ValueError, match="floor_lag_warning must be positive"):
        DetectionJobConfig(floor_lag_warning=timedelta(0))


def test_the_same_holder_is_named_again_once_its_transaction_has_lasted_the_repeat_span_more(migrated_database_url):
    """Once per holder is not never again: a session open for days is named again each
    ``repeat_every`` (a day by default) of its transaction."""
    watch = FloorLagWatch(logging.getLogger("test.floor_lag"), "test", repeat_every=timedelta(seconds=1))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        with left_idle_in_a_transaction(migrated_database_url, "psql-left-open") as idle:

            def check() -> FloorHolder | None:
                floor, clock = conn.execute("SELECT open_transactions_floor(), clock_timestamp()").fetchone() or ()
                return watch.check(conn, floor, clock, LAG)

            first = check()
            assert first is not None and first.pid == idle.info.backend_pid
            assert check() is None  # the same holder, said just now
            time.sleep(1.1)
            again = check()
            assert again is not None and again.pid == first.pid and again.age >= first.age + timedelta(seconds=1)
        assert check() is None  # none left open
