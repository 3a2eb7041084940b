"""What a VEE round's look-back costs: each meter's last read before the round's load is looked up
newest first, and for a meter without any reading that look probed every 7-day chunk of readings to
find nothing, in every round (the cost collector migration 0067 took out of GET /meters: 75 ms for
250 such meters on 3 years). The look is now made only for a meter that has readings
(``meters.has_readings``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from collector.store import ReadingStore
from collector.vee.config import VeeConfig
from collector.vee.series import LOAD_QUERY, load_series
from server.meters.repository import register_meters
from tests.query_plans import plan_nodes

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
WEEK = timedelta(days=7)


def _row(meter_id: str, ts: datetime, volume: int) -> tuple[str, str, str, None, None, list[str], str, int]:
    return (meter_id, ts.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{volume}.000", None, None, [], "GW1", 1)


def _probes_of_readings(plan: dict[str, Any]) -> int:
    """How many times a plan looked into readings (each chunk's scan counts per loop)."""
    scans = [
        n
        for n in plan_nodes(plan)
        if str(n.get("Relation Name", "")).startswith(("_hyper_", "readings")) and not n.get("Plans")
    ]
    return sum(int(n["Actual Loops"]) for n in scans)


def test_the_look_back_does_not_probe_readings_for_meters_without_any(migrated_database_url) -> None:
    """No timing here: the plan of a round's load of the two days after T0, on 40 meters over eight
    weekly chunks, 20 of them read once a week up to T0 and 20 registered but never read. The
    look-back's part of the plan (each meter's last read before the load) probed the newest chunk
    once for each read meter, where it found its read at T0, and all eight chunks for each unread
    meter: 20 + 20 x 8 = 180 probes; now 20."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        register_meters(conn, [(f"M{n:02d}", "DMA1", "customer") for n in range(40)])
    store = ReadingStore(url)
    try:
        store.write([_row(f"M{n:02d}", T0 - w * WEEK, 100 - w) for n in range(0, 40, 2) for w in range(8)])
    finally:
        store.close()
    start, end = T0 + timedelta(hours=1), T0 + timedelta(days=2)  # the meters' next two days
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE readings")
        conn.execute("ANALYZE meters")
        series = load_series(conn, start, end, VeeConfig(), None)  # leaves its vee_meter_codes
        assert len(series.meter_ids) == 40 and len(series) == 20  # each read meter's read at T0
        query = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) " + LOAD_QUERY).format(
            start=sql.Literal(start), end=sql.Literal(end)
        )
        row = conn.execute(query).fetchone()
    assert row is not None
    explained = row[0] if isinstance(row[0], list) else json.loads(row[0])
    window, look_back = explained[0]["Plan"]["Plans"]  # the UNION ALL's two parts, in order
    assert _probes_of_readings(window) > 0
    assert _probes_of_readings(look_back) == 20
