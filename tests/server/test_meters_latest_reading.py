"""A meter's latest reading on GET /meters, GET /meters/{id} and the web page, and what finding it
costs. The look for it (newest first) found a meter's recent read in the newest chunk of readings,
but for a meter without any it probed every 7-day chunk to find nothing: 83 ms for 500 meters, 250
of them unread, on 3 years of history (157 chunks), 9 ms on a week. A meter now says whether it has
readings (collector migration 0067), and the look is made only where it has."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

import collector.migrate as migrate_module
from collector.store import ReadingStore
from collector.vee.editing import substitute_reading
from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import get_meter, list_meters, register_meters
from tests.query_plans import explained_nodes, statements_run

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
WEEK = timedelta(days=7)

#: Each meter's latest reading as the API looked for it before migration 0067: the oracle.
LATEST_BY_PROBING = """
SELECT m.meter_id, latest.ts AS latest_ts, latest.volume_m3 AS latest_volume_m3, latest.quality AS latest_quality
FROM meters m LEFT JOIN LATERAL (
    SELECT ts, volume_m3, quality FROM readings r WHERE r.meter_id = m.meter_id ORDER BY ts DESC LIMIT 1
) latest ON true
ORDER BY m.meter_id
"""


def _connect(url: str) -> psycopg.Connection[Any]:
    """Rows as dicts, as the server's connections give them."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@pytest.fixture
def conn(migrated_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with _connect(migrated_database_url) as connection:
        yield connection


def _row(meter_id: str, ts: datetime, volume: int) -> tuple[str, str, str, None, None, list[str], str, int]:
    return (meter_id, ts.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{volume}.000", None, None, [], "GW1", 1)


def _latest(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["meter_id"], r["latest_ts"], r["latest_volume_m3"], r["latest_quality"]) for r in rows]


# how a meter comes to be: registered ahead of its fitting, or seen by the collector first; then read
# by the collector (weeks ago: a meter gone silent, 0: a fresh one), given a substituted read, or not
_HISTORIES = st.lists(
    st.tuples(
        st.sampled_from(["registered", "seen", "registered after read"]),
        st.lists(st.integers(0, 6), max_size=3),  # weeks before T0 of the collector's reads
        st.one_of(st.none(), st.integers(0, 6)),  # weeks before T0 of a person's substituted read
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories=_HISTORIES, since_weeks=st.one_of(st.none(), st.integers(0, 7)))
def test_each_meter_has_the_latest_reading_probing_every_chunk_finds(migrated_database_url, histories, since_weeks):
    """Unread, silent and fresh meters, registered before or after the collector first saw them,
    with reads across seven weekly chunks: the list (with and without ``not_read_since``) and each
    meter have the latest reading the look through every chunk finds."""
    with _connect(migrated_database_url) as conn:
        conn.execute("DELETE FROM readings; DELETE FROM reading_history; DELETE FROM meters")
        store = ReadingStore(migrated_database_url)  # one per example: it remembers the meters it saw
        try:
            for n, (how, weeks, substituted) in enumerate(histories):
                meter = f"M{n:02d}"
                if how == "registered":
                    register_meters(conn, [(meter, "DMA1", "customer")])
                if weeks:
                    store.write([_row(meter, T0 - w * WEEK + timedelta(hours=n), 100 - w) for w in weeks])
                elif how != "registered":  # the collector sees a meter by its reads
                    store.write([_row(meter, T0 - 6 * WEEK, 1)])
                if substituted is not None:
                    at = T0 - substituted * WEEK + timedelta(minutes=30)
                    substitute_reading(  # (7 m³ against reads of 94 to 100: out of order, and confirmed)
                        conn,
                        meter,
                        at,
                        Decimal(7),
                        by="tester",
                        reason="site visit photo",
                        out_of_sequence_confirmed=True,
                    )
                if how == "registered after read":
                    register_meters(conn, [(meter, "DMA1", "customer")])
        finally:
            store.close()
        expected = _latest(conn.execute(LATEST_BY_PROBING).fetchall())
        assert _latest(list_meters(conn, None, 100)) == expected
        for meter_id, *latest in expected:
            found = get_meter(conn, meter_id)
            assert found is not None and _latest([found]) == [(meter_id, *latest)]
        if since_weeks is not None:
            since = T0 - since_weeks * WEEK
            silent = [row for row in expected if row[1] is None or row[1] < since]
            assert _latest(list_meters(conn, None, 100, since)) == silent


def _probes_of_readings(conn: psycopg.Connection[Any], query: str, params: Any) -> list[int]:
    """How many times the query's plan looked into readings: each chunk's scan's loops."""
    nodes = explained_nodes(conn, query, params)
    scans = [  # the scans themselves, each chunk's (TimescaleDB's ChunkAppend above them counts not)
        n for n in nodes if str(n.get("Relation Name", "")).startswith(("_hyper_", "readings")) and not n.get("Plans")
    ]
    return [int(n["Actual Loops"]) for n in scans]


def test_the_list_and_the_page_do_not_look_into_readings_for_meters_without_any(conn) -> None:
    """No timing here: the plans of GET /meters' and the web page's queries, on 40 meters over eight
    weekly chunks up to this hour, 20 of them read this week and 20 registered but never read. Before
    (one statement a list), each unread meter's look probed all eight chunks: 20 + 20 x 8 = 180
    probes. Now each chunk is probed by the read meters only (20 times) or not at all, and only in the
    list's first statement, whose look for the latest is bounded to the last week (one or two chunks,
    and not-read-since's look between then and there, which the latest rules out first): it finds
    every read meter's there, so that none is looked for further back in another statement. Not read
    since three weeks ago: the read meters' latest this week rules them out, the unread ones are in."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    register_meters(conn, [(f"M{n:02d}", "DMA1", "customer") for n in range(40)])
    store = ReadingStore(conn.info.dsn)
    try:
        store.write([_row(f"M{n:02d}", now - w * WEEK, 100 - w) for n in range(0, 40, 2) for w in range(8)])
    finally:
        store.close()
    conn.execute("ANALYZE readings")
    conn.execute("ANALYZE meters")
    key = create_api_key(conn, "desk", ["admin"])
    since = (now - 3 * WEEK).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(conn.info.dsn)) as client:
        for path, listed in (("/meters?limit=100", 40), (f"/meters?limit=100&not_read_since={since}", 20), ("/", 40)):
            with statements_run() as statements:
                response = client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            if path != "/":
                assert len(response.json()["items"]) == listed, response.text
            of_readings = [(q, p) for q, p in statements if "readings r" in q]
            assert len(of_readings) == 1, statements  # the list's: none further back
            probes = _probes_of_readings(conn, *of_readings[0])
            assert set(probes) - {0} == {20} and sum(probes) <= 2 * 20, probes


def test_a_database_upgraded_knows_which_meters_have_readings(database_url, monkeypatch) -> None:
    """Migration 0067 marks the meters already recorded that have no reading, and only those."""
    every = migrate_module.migration_files()
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [f for f in every if "0067_" not in f[0]])
    migrate_module.migrate(database_url)
    with _connect(database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES ('FRESH'), ('SILENT'), ('NEW')")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('FRESH', %s, 1), ('SILENT', %s, 1)",
            (T0, T0 - 20 * WEEK),
        )
        monkeypatch.setattr(migrate_module, "migration_files", lambda: every)
        migrate_module.migrate(database_url)
        flags = {r["meter_id"]: r["has_readings"] for r in conn.execute("SELECT meter_id, has_readings FROM meters")}
        assert flags == {"FRESH": True, "SILENT": True, "NEW": False}
        assert _latest(list_meters(conn, None, 10)) == _latest(conn.execute(LATEST_BY_PROBING).fetchall())
