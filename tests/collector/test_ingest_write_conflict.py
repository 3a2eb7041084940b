"""A write the database rolled back for a deadlock with another transaction is a conflict, not the
database away: the collector's writer tries the batch again at once on the same connection, counts
it in ``write_conflicts`` and says it once. On a real collector, a real broker and a real deadlock.

Before, every ``OperationalError`` was taken for an outage, and ``DeadlockDetected`` is one: the
writer counted a database error, closed its connection, logged "database unavailable ... messages
wait, unacknowledged" and tried again a second later on a new connection."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows

METER = "WM-WRITE-CONFLICT"
FIRST, EARLY, LATE = (datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (0, 1, 2))


def _waiting_sessions(url: str) -> list[int]:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as monitor:
        rows = monitor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (name,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _connected(url: str, pid: int) -> bool:
    with psycopg.connect(url, autocommit=True) as monitor:
        return monitor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is not None


def test_a_deadlock_is_tried_again_at_once_and_not_said_as_the_database_away(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer replaces the meter's 01:00 and 02:00 estimates with its reads: it locks 01:00 and
    waits for 02:00, held by another session, which then asks for 01:00. The writer, waiting the
    longer, finds the deadlock and is rolled back; the other session takes 01:00 and lets both go.
    The writer's batch is stored by its retry, on the connection it had."""
    caplog.set_level(logging.INFO)
    url, gw = migrated_database_url, "gw-conflict"
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [(METER, FIRST.isoformat(), 10.0)]))
        wait_for(lambda: count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{METER}'") == 1, 30, "first")
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) VALUES "
                "(%s, %s, 10.05, 'estimated', 'vee:linear', 'gap'), (%s, %s, 10.1, 'estimated', 'vee:linear', 'gap')",
                (METER, EARLY, METER, LATE),
            )
        with psycopg.connect(url) as other:
            other.execute("SET deadlock_timeout = '30s'")  # the writer (1 s, the default) finds it first
            other.execute("SELECT 1 FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE", (METER, LATE))
            readings = [(METER, EARLY.isoformat(), 10.1), (METER, LATE.isoformat(), 10.2)]
            publish(f"aquami/v1/{gw}/reads", reads(gw, 2, readings))
            _waiting_on_rows(url, 1)
            (writer,) = _waiting_sessions(url)
            other.execute("SELECT 1 FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE", (METER, EARLY))
            other.rollback()
        actual = f"SELECT count(*) FROM readings WHERE meter_id = '{METER}' AND quality = 'actual'"
        wait_for(lambda: count(url, actual) == 3, 30, "the meter's reads stored")
        assert collector.counters.write_conflicts == 1
        assert collector.counters.database_errors == 0
        assert _connected(url, writer), "the writer's connection was closed"
    said = [r for r in caplog.records if r.name == "collector.service"]
    assert not [r for r in said if "database" in r.getMessage()], [r.getMessage() for r in said]
    conflicts = [r.getMessage() for r in said if "conflicted" in r.getMessage()]
    assert len(conflicts) == 1 and "deadlock detected" in conflicts[0], conflicts
