"""Only sessions that can write aquami's rows hold the open-transactions floor back: a real
autovacuum worker crawling through a table does not (collector migration 0074)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from collector.floor_lag import FloorHolder, FloorLagWatch, floor_holder

LAG = timedelta(seconds=1)
#: How long the autovacuum launcher gets to start a worker on the scratch table: with a naptime of
#: 1 s it takes one to three seconds; generous for a loaded machine.
AUTOVACUUM_WAIT = 30.0


def _naptime_set_by_alter_system(conn: psycopg.Connection) -> str | None:
    """autovacuum_naptime as ALTER SYSTEM set it (postgresql.auto.conf), or None when it did not."""
    row = conn.execute(
        "SELECT setting FROM pg_file_settings WHERE name = 'autovacuum_naptime'"
        " AND sourcefile LIKE '%%/postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


def _set_naptime(admin_url: str, naptime: str | None) -> None:
    """ALTER SYSTEM's autovacuum_naptime set to ``naptime`` (None: reset), and the configuration
    reloaded; on a connection of its own, retried, as the cluster is shared by other tests."""
    for attempt in range(5):
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
                if naptime is None:
                    admin.execute("ALTER SYSTEM RESET autovacuum_naptime")
                else:
                    admin.execute(sql.SQL("ALTER SYSTEM SET autovacuum_naptime = {}").format(sql.Literal(naptime)))
                admin.execute("SELECT pg_reload_conf()")
                return
        except psycopg.OperationalError:
            if attempt == 4:
                raise
            time.sleep(1)


@contextmanager
def autovacuum_naptime_of_one_second(admin_url: str) -> Iterator[None]:
    """The autovacuum launcher looking at each database every second (the default is a minute),
    put back as it was afterwards, whatever happens in between."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        before = _naptime_set_by_alter_system(admin)
    _set_naptime(admin_url, "1")
    try:
        yield
    finally:
        _set_naptime(admin_url, before)


def _crawling_autovacuum(conn: psycopg.Connection) -> tuple[int, datetime]:
    """The pid and transaction start of an autovacuum worker on ``scratch``, waited for."""
    deadline = time.monotonic() + AUTOVACUUM_WAIT
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid, xact_start FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'autovacuum worker' AND query LIKE '%%scratch%%' AND xact_start IS NOT NULL"
        ).fetchone()
        if row is not None:
            return int(row[0]), row[1]
        time.sleep(0.2)
    seen = conn.execute("SELECT backend_type, query FROM pg_stat_activity WHERE datname = current_database()")
    raise AssertionError(
        f"no autovacuum worker started on the scratch table within {AUTOVACUUM_WAIT:.0f} s "
        f"(autovacuum off, or all autovacuum_max_workers busy?); this database's sessions: {seen.fetchall()}"
    )


def test_an_autovacuum_worker_does_not_hold_the_floor_back(timescale_admin_url, migrated_database_url, caplog):
    """An autovacuum worker vacuuming a big chunk runs for hours under its cost limit. The floor took
    its transaction's start, so detection re-read, and billing re-sent, ever more for nothing, and
    the floor-lag warning named the vacuum and advised pg_terminate_backend for it. A real worker,
    made to crawl through a scratch table (a cost limit of 1, 100 ms a page), is no longer counted;
    a client's open transaction beside it still is."""
    with autovacuum_naptime_of_one_second(timescale_admin_url):
        # Closed before the wait: a session's statistics (the dead tuples autovacuum goes by) are
        # flushed when it ends, where they could wait 10 s in an idle session.
        with psycopg.connect(migrated_database_url, autocommit=True) as setup:
            setup.execute(
                "CREATE TABLE scratch (id integer, pad text) WITH (autovacuum_vacuum_threshold = 0,"
                " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
                " autovacuum_vacuum_cost_limit = 1)"
            )
            setup.execute("INSERT INTO scratch SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
            setup.execute("DELETE FROM scratch")
        with psycopg.connect(migrated_database_url, autocommit=True) as conn:
            pid, began = _crawling_autovacuum(conn)
            time.sleep(LAG.total_seconds() + 0.5)

            floor, clock = conn.execute("SELECT open_transactions_floor(), clock_timestamp()").fetchone() or ()
            holder = floor_holder(conn)
            watch = FloorLagWatch(logging.getLogger("test.floor_lag_background"), "test")
            caplog.set_level(logging.WARNING, logger="test.floor_lag_background")
            said = watch.check(conn, floor, clock, LAG)
            still = conn.execute("SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            assert still == (began,), "the autovacuum worker finished before the floor was asked: no evidence"

            assert floor > began, f"the floor {floor} is held back by autovacuum worker {pid} (since {began})"
            assert holder is None, holder
            assert said is None and caplog.records == [], [r.getMessage() for r in caplog.records]

            with psycopg.connect(migrated_database_url) as client:
                client.execute("SELECT 1")  # idle in transaction
                (client_began,) = (
                    conn.execute(
                        "SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (client.info.backend_pid,)
                    ).fetchone()
                    or ()
                )
                (floor,) = conn.execute("SELECT open_transactions_floor()").fetchone() or ()
                holder = floor_holder(conn)
                assert floor == client_began
                assert holder is not None and holder.pid == client.info.backend_pid
                assert holder.backend_type == "client backend"
                client.rollback()


def _holder(backend_type: str | None) -> FloorHolder:
    return FloorHolder(4242, None, "", backend_type, "active", datetime(2026, 12, 6, 4, tzinfo=UTC), LAG)


def test_only_a_clients_session_is_advised_to_be_ended() -> None:
    """A logical replication worker still holds the floor (it writes a subscriber's readings), but
    ending it only restarts it to apply the same again: the warning does not advise it."""
    assert "pg_terminate_backend(4242)" in _holder("client backend").advice()
    assert "pg_terminate_backend(4242)" in _holder(None).advice()  # not known: a client's, as before
    for other in ("logical replication apply worker", "logical replication worker", "autovacuum worker"):
        advice = _holder(other).advice()
        assert "pg_terminate_backend" not in advice and "rather than end it" in advice, advice
