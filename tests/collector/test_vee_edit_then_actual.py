"""A person's edit of VEE's estimate, then the meter's own read for that time: the meter's read wins,
and the edit is kept in the reading's history. An edit of a read the meter sent stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from collector.store import ReadingStore
from collector.vee.editing import edit_reading, reading_history
from collector.vee.runner import run_vee

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
HOURS = [NOW - timedelta(hours=h) for h in range(30, 0, -1)]
X = HOURS[20]


def _stored(url: str) -> tuple[tuple[Decimal, str], list[tuple[Decimal, str, str | None]], int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT volume_m3, quality FROM readings WHERE meter_id = 'E1' AND ts = %s", (X,)).fetchone()
        history = [(h["volume_m3"], h["quality"], h["quality_by"]) for h in reading_history(conn, "E1", X)]
        conflicts = conn.execute("SELECT count(*) FROM reading_conflicts").fetchone()
    assert row is not None and conflicts is not None
    return (row[0], row[1]), history, conflicts[0]


def test_the_meter_s_read_replaces_a_person_s_edit_of_an_estimate_and_the_edit_is_kept(migrated_database_url):
    """VEE estimated the missing hour X, a clerk corrected the estimate to 100.150 (the customer
    phoned), then the meter's own read for X arrived from a gateway's spool: 100.200. Before, the
    clerk's guess stayed for good, the meter's read waited in reading_conflicts, and X was flagged
    register_backwards (100.190 → 100.150) and conflicting_duplicate."""
    url = migrated_database_url
    store = ReadingStore(url)
    store.write([("E1", t.isoformat(), f"{100 + 0.01 * i:.3f}", None, None, [], "gw", i)
                 for i, t in enumerate(HOURS) if t != X])  # fmt: skip
    with psycopg.connect(url) as conn:
        run_vee(conn, HOURS[0], NOW, now=NOW)
        edit_reading(conn, "E1", X, Decimal("100.150"), by="clerk", reason="customer phoned")
        conn.commit()
    store.write([("E1", X.isoformat(), "100.200", None, None, [], "gw", 99)])  # the meter's real read
    store.close()
    reading, history, conflicts = _stored(url)
    assert reading == (Decimal("100.200"), "actual") and conflicts == 0
    assert [(quality, by) for _, quality, by in history] == [("estimated", "vee:linear"), ("edited", "clerk")]
    with psycopg.connect(url) as conn:
        run_vee(conn, HOURS[0], NOW, now=NOW)
        flags = conn.execute("SELECT rule FROM vee_flags WHERE ts = %s", (X,)).fetchall()
    assert flags == []


def test_an_edit_of_the_meter_s_own_read_stays_when_the_read_arrives_again(migrated_database_url):
    """A gateway redelivers a read a person has corrected: the correction stays (the redelivery is
    the value corrected, no conflict); a different value for that time is kept for VEE as before."""
    url = migrated_database_url
    store = ReadingStore(url)
    store.write([("E1", t.isoformat(), f"{100 + 0.01 * i:.3f}", None, None, [], "gw", i) for i, t in enumerate(HOURS)])
    with psycopg.connect(url) as conn:
        edit_reading(conn, "E1", X, Decimal("100.205"), by="clerk", reason="photo of the register")
        conn.commit()
    store.write([("E1", X.isoformat(), "100.200", None, None, [], "gw", 20)])  # the same read again
    assert _stored(url)[0] == (Decimal("100.205"), "edited") and _stored(url)[2] == 0
    store.write([("E1", X.isoformat(), "100.300", None, None, [], "gw", 21)])  # another value for X
    store.close()
    assert _stored(url)[0] == (Decimal("100.205"), "edited") and _stored(url)[2] == 1
