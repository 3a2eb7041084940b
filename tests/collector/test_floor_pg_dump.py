"""A backup's pg_dump does not hold the open-transactions floor back (collector migration 0075)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg

from collector.detection_job import DetectionJobConfig, run_detection_once
from tests.collector.test_detection_job import START, fleet, store_hours
from tests.collector.test_floor_lag import LAG, _warnings, left_idle_in_a_transaction


def test_a_pg_dump_running_is_not_the_floor_and_a_writer_beside_it_still_is(migrated_database_url, caplog):
    """pg_dump reads the database in one REPEATABLE READ, READ ONLY transaction, as long as the dump
    takes (hours for a utility's years of hourly reads), under application_name 'pg_dump'. It writes
    nothing, so it dates no row. Before, it held detection's arrivals and billing's
    next_changed_since back for as long as it ran, and past the lag the warning named the dump and
    advised pg_terminate_backend for it. A session of the same shape is used here (the pg_dump a
    deployment runs is its server's major version, which the test machine need not have)."""
    meters = fleet()[:3]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(migrated_database_url, meters, 0, 9 * 24)
    config = DetectionJobConfig(history_days=9, floor_lag_warning=LAG)
    caplog.set_level(logging.WARNING, logger="collector.detection_job")
    with (
        psycopg.connect(migrated_database_url, autocommit=True) as conn,
        psycopg.connect(migrated_database_url, application_name="pg_dump") as dump,
    ):
        dump.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # as pg_dump does
        dump.execute("SELECT count(*) FROM readings").fetchone()  # reading, its transaction open
        (dump_began,) = conn.execute(
            "SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (dump.info.backend_pid,)
        ).fetchone() or (None,)
        assert dump_began is not None
        time.sleep(LAG.total_seconds() + 0.5)

        (floor, now) = conn.execute("SELECT open_transactions_floor(), clock_timestamp()").fetchone() or ()
        assert dump_began < now - LAG  # the dump has run longer than the lag the warning is for
        assert floor > dump_began  # before: the floor was the dump's start
        assert conn.execute("SELECT count(*) FROM open_transactions_floor_holder()").fetchone() == (0,)
        run_detection_once(conn, START + timedelta(days=9), config)
        (arrivals_from,) = conn.execute(
            "SELECT arrivals_from FROM detection_runs ORDER BY run_at DESC LIMIT 1"
        ).fetchone() or (None,)
        assert arrivals_from > dump_began
        assert _warnings(caplog) == []  # before: "held by pid … application_name 'pg_dump' … end it"

        # a session that may write, open beside the dump, still holds the floor and is still named
        with left_idle_in_a_transaction(migrated_database_url, "psql-left-open") as idle:
            (began,) = conn.execute(
                "SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (idle.info.backend_pid,)
            ).fetchone() or (None,)
            assert conn.execute("SELECT open_transactions_floor()").fetchone() == (began,)
            run_detection_once(conn, START + timedelta(days=9, hours=1), config)
            (said,) = _warnings(caplog)
            assert f"pid {idle.info.backend_pid}" in said and "'psql-left-open'" in said
        dump.rollback()
