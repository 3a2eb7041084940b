"""A VEE batch deleting the estimates of a long gap the rules leave for a person (its opening read
before the load: :mod:`collector.vee.long_gaps`) and the collector replacing estimates with the
meter's reads do not deadlock. On real connections to the real database, a real VEE round.

Before, the batch deleted the long gap's estimates as its DELETE came to them and kept them locked
to its end, then locked the other estimates it deletes (in (meter, time) order, as ingest does):
holding meter B's estimates and waiting for meter A's, which ingest held while it waited for B's
(its own order: A before B). PostgreSQL failed one side: ingest's write (the collector's writer
tries it again) or VEE's batch (run again)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from collector.batch_parser import ReadingRow
from collector.store import ReadingStore
from collector.vee.runner import run_vee
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread

CLOSE = datetime(2026, 11, 3, 10, tzinfo=UTC)  # B's long gap closes, A's short gap opens
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
A, B = "DL-A", "DL-B"
A_REPLACED = CLOSE + HOUR  # A's stale estimate the collector replaces (VEE deletes it: a late read in its gap)
B_REPLACED = CLOSE - 2 * HOUR  # an estimate of B's 63-day gap the collector replaces (VEE deletes it: too long)


def _seed(url: str) -> None:
    """A: hourly reads with a 4-hour gap estimated, then a late read at 02:30 into it (its estimates
    stale). B: hourly reads, 63 days silent filled with hourly estimates by earlier code (the rules
    estimate up to 62 days; its opening read before the round's 28-day look-back), hourly reads."""
    rows: list[tuple[str, datetime, Decimal, str, datetime]] = []
    for k in range(-24, 25):
        if not 1 <= k <= 4:
            rows.append((A, CLOSE + k * HOUR, Decimal(f"{100 + k * 0.01:.3f}"), "actual", CLOSE + k * HOUR))
        else:
            rows.append((A, CLOSE + k * HOUR, Decimal(f"{100 + k * 0.01:.3f}"), "estimated", CLOSE + 5 * HOUR))
    rows.append((A, CLOSE + 2.5 * HOUR, Decimal("100.025"), "actual", CLOSE + 7 * HOUR))
    opened = CLOSE - 63 * DAY
    for k in range(-24, 1):
        rows.append((B, opened + k * HOUR, Decimal(f"{200 + k * 0.01:.3f}"), "actual", opened + k * HOUR))
    hours = int((CLOSE - opened) / HOUR)
    for k in range(1, hours):
        rows.append((B, opened + k * HOUR, Decimal(f"{200 + 10 * k / hours:.3f}"), "estimated", CLOSE + HOUR))
    for k in range(24):
        rows.append((B, CLOSE + k * HOUR, Decimal(f"{210 + k * 0.01:.3f}"), "actual", CLOSE + k * HOUR))
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO meters (meter_id, registered, read_interval_s) VALUES (%s, true, 3600), (%s, true, 3600)",
            (A, B),
        )
        with conn.cursor().copy(
            "COPY readings (meter_id, ts, volume_m3, quality, received_at, quality_by, quality_reason) FROM STDIN"
        ) as cp:
            for meter, ts, volume, quality, received in rows:
                by, why = ("vee:linear", "linear estimate (earlier code)") if quality == "estimated" else (None, None)
                cp.write_row((meter, ts, volume, quality, received, by, why))


def _ingest_replacing(url: str) -> Any:
    store = ReadingStore(url, check_gateways=False)
    try:
        rows: list[ReadingRow] = [
            (A, A_REPLACED.isoformat(), "100.011", None, None, [], "gw", 1),
            (B, B_REPLACED.isoformat(), "209.990", None, None, [], "gw", 1),
        ]
        return store.write(rows)
    finally:
        store.close()


def _vee_round(url: str) -> Any:
    with psycopg.connect(url) as conn:
        report = run_vee(conn, CLOSE - 6 * HOUR, CLOSE + 3 * DAY, now=CLOSE + 30 * DAY)
        conn.commit()
        return report


def test_vee_deleting_a_long_gap_s_estimates_and_ingest_replacing_estimates_do_not_deadlock(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A third session holds A's 11:00 estimate while ingest comes to replace it and one of B's
    (it waits for A's) and a VEE round comes over both meters: it deletes B's long gap, then waits
    for A's 11:00 (stale: the late 12:30 read came into its gap). Then it lets go. Before, VEE held
    B's estimates from its long-gap deletion while waiting for A's, and ingest, taking A's first,
    waited for B's: a deadlock, one side failed. Now the long gap's deletion is committed before the
    batch takes any other row (its rows locked in (meter, time) order first): nothing fails, and
    both of the meter's reads stand."""
    caplog.set_level(logging.INFO, logger="collector.vee.runner")
    url = migrated_database_url
    _seed(url)
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1 FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE", (A, A_REPLACED))
        ingest, ingested = _in_thread(lambda: _ingest_replacing(url))
        _waiting_on_rows(url, 1)
        vee, ran = _in_thread(lambda: _vee_round(url))
        _waiting_on_rows(url, 2)
        holder.rollback()
    ingest.join(60)
    vee.join(60)
    assert not ingest.is_alive() and not vee.is_alive()
    errors = [(side, done.get("error")) for side, done in (("ingest", ingested), ("vee", ran)) if "error" in done]
    assert errors == []
    conflicts = [r.getMessage() for r in caplog.records if "conflicted" in r.getMessage()]
    assert conflicts == []
    with psycopg.connect(url) as conn:
        replaced = conn.execute(
            "SELECT meter_id, ts, volume_m3::text, quality FROM readings WHERE (meter_id, ts) IN ((%s, %s), (%s, %s)) "
            "ORDER BY meter_id",
            (A, A_REPLACED, B, B_REPLACED),
        ).fetchall()
        left = conn.execute(
            "SELECT count(*) FROM readings WHERE meter_id = %s AND quality = 'estimated'", (B,)
        ).fetchone()
    assert replaced == [(A, A_REPLACED, "100.011", "actual"), (B, B_REPLACED, "209.990", "actual")]
    assert left == (0,)  # (the long gap's estimates deleted: left for a person)
