"""VEE deleting its estimates and the collector replacing them with the meter's actual reads take
the same rows in one order, so neither fails on a deadlock. On real connections to the real database.

Before, VEE's deletions of a batch were several statements (a reason each), and ingest's replacing
UPDATE took the rows in its plan's order: ingest holding the 01:00 estimate and waiting for the
02:00 one, which VEE had deleted and held, while VEE waited for the 01:00 one. PostgreSQL broke the
cycle by failing one side (``DeadlockDetected``): ingest's batch was taken for the database away
(its connection closed, its messages redelivered a second later), or VEE's round ended there, its
remaining batches left until the next round (an hour)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from collector.batch_parser import ReadingRow
from collector.store import ReadingStore
from collector.vee.runner import Deletion, _delete_estimates_all
from tests.server.test_correction_and_ingest_take_turns import _in_thread

METER = "WM-VEE-DEADLOCK"
EARLY, LATE = datetime(2026, 3, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, 2, tzinfo=UTC)


def _waiting_on_rows(url: str, sessions: int) -> None:
    """Until ``sessions`` sessions of the test's database wait for a lock (a row's, here)."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as monitor:
        for _ in range(200):
            row = monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (name,)
            ).fetchone()
            if row is not None and row[0] >= sessions:
                return
            time.sleep(0.05)
    raise AssertionError(f"{sessions} sessions never came to wait for a lock")


def _vee_deleting(url: str) -> Callable[[], Any]:
    """A VEE batch deleting the 02:00 estimate for one reason, then the 01:00 one for another."""

    def run() -> None:
        with psycopg.connect(url) as conn:
            _delete_estimates_all(
                conn,
                [
                    Deletion(([METER], [LATE.timestamp()]), "vee:re-estimate", "a measured read came into its gap"),
                    Deletion(([METER], [EARLY.timestamp()]), "vee:no-gap", "no gap at the meter's interval"),
                ],
            )
            conn.commit()

    return run


def _ingest_replacing(url: str) -> Callable[[], Any]:
    """The collector's writer storing the meter's actual reads of both hours."""

    def write() -> Any:
        store = ReadingStore(url, check_gateways=False)
        try:
            rows: list[ReadingRow] = [
                (METER, EARLY.isoformat(), "10.100", None, None, [], "gw", 1),
                (METER, LATE.isoformat(), "10.200", None, None, [], "gw", 1),
            ]
            return store.write(rows)
        finally:
            store.close()

    return write


def test_vee_deleting_estimates_and_ingest_replacing_them_do_not_deadlock(migrated_database_url: str) -> None:
    """A third session holds the 01:00 estimate while ingest comes to replace both (it waits for
    01:00) and VEE to delete both (02:00 first, then it waits for 01:00); then lets go. Before,
    ingest took 01:00, waited for 02:00 held by VEE, which waited for 01:00: a deadlock, one side
    failed. Now both take the rows in (meter, time) order before touching any: VEE waits behind
    ingest, whose actual reads stand, and finds no estimate left to delete."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES (%s)", (METER,))
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) VALUES "
            "(%s, %s, 10.0, 'estimated', 'vee:linear', 'gap'), (%s, %s, 10.1, 'estimated', 'vee:linear', 'gap')",
            (METER, EARLY, METER, LATE),
        )
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1 FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE", (METER, EARLY))
        ingest, ingested = _in_thread(_ingest_replacing(url))
        _waiting_on_rows(url, 1)
        vee, deleted = _in_thread(_vee_deleting(url))
        _waiting_on_rows(url, 2)
        holder.rollback()
    ingest.join(30)
    vee.join(30)
    assert not ingest.is_alive() and not vee.is_alive()
    errors = [(side, done.get("error")) for side, done in (("ingest", ingested), ("vee", deleted)) if "error" in done]
    assert errors == []
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT ts, volume_m3::text, quality FROM readings WHERE meter_id = %s ORDER BY ts", (METER,)
        ).fetchall()
    assert stored == [(EARLY, "10.100", "actual"), (LATE, "10.200", "actual")]
