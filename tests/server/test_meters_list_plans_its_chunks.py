"""GET /meters and the web meters page list each meter with its latest reading looked for between bounds
known when each query is planned (server.meters.repository.list_meters: within 7 days of now in the list's
query, then further back in spans, all the listed meters not found yet in each span's one query), and
list the same rows, in the same order, as the one look at all of each meter's readings did. Before, that
look had no bound on time: TimescaleDB planned every chunk of readings (7 days each) once per list, and
the list's cost grew with the database's history, not its meters'.

The oracle is the old query itself (benchmarks.bench_meters_list_plans.unbounded_list_meters), asked of one
database whose meters' readings spread over many chunks: meters read twice a day for two years up to this
hour (a customer meter, a bulk one, a district's inlet), one read a day ahead of now (a clock ahead), one
read only eight days ago (just before the list's first look), one read long ago then silent for months,
then read again and silent for six months since, one read once, one read seven years ago and three years
ago only (the last an estimate: no gateway; one assigned), one registered and never read, one recorded by
other means (it may have readings, as far as ``meters`` knows) without any, and one its gateway reported
offline. The plans are PostgreSQL's own (EXPLAIN): each statement the list runs is counted by the chunks of
readings its plan names."""

from __future__ import annotations

import re
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

from benchmarks.bench_meters_list_plans import unbounded_list_meters
from server.app import create_app
from server.auth import create_api_key
from server.meters import repository
from tests.query_plans import statements_run
from tests.services import create_database, drop_database

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
#: (meter id, role, bulk, has_readings as ``meters`` says), in the list's order
METERS = (
    ("A-BULK", "customer", True, True),
    ("A-CUSTOMER", "customer", False, True),
    ("A-INLET", "inlet", False, True),
    ("B-AHEAD", "customer", False, True),
    ("C-LAST-WEEK", "customer", False, True),
    ("D-GAP", "customer", False, True),
    ("E-ONE", "customer", False, True),
    ("F-ANCIENT", "customer", False, True),
    ("G-NEVER", "customer", False, False),
    ("H-UNKNOWN", "customer", False, True),
    ("I-OFFLINE", "customer", False, True),
)
IDS = [meter[0] for meter in METERS]


def _twice_daily(meter_id: str, since: datetime, until: datetime) -> list[tuple[str, datetime, Decimal, str]]:
    """Reads at 06:00 and 18:00 from ``since`` up to ``until``, 0.010 m³ up each time, every ninth estimated."""
    reads, ts, n = [], since.replace(hour=6), 0
    while ts <= until:
        reads.append((meter_id, ts, Decimal("100") + n * Decimal("0.010"), "estimated" if n % 9 == 4 else "actual"))
        ts, n = ts + timedelta(hours=12), n + 1
    return reads


@pytest.fixture(scope="module")
def meters_url(timescale_admin_url: str, migrated_template: str) -> Iterator[str]:
    """One database for the module's tests, its meters' readings as the module's docstring says."""
    url = create_database(timescale_admin_url, migrated_template)
    reads = (
        _twice_daily("A-CUSTOMER", NOW - 104 * WEEK, NOW)
        + _twice_daily("A-BULK", NOW - 30 * WEEK, NOW - DAY)
        + _twice_daily("A-INLET", NOW - 10 * WEEK, NOW - 2 * DAY)
        + _twice_daily("B-AHEAD", NOW - 5 * WEEK, NOW - 3 * WEEK)
        + [("B-AHEAD", NOW + DAY + timedelta(minutes=5), Decimal("200"), "actual")]
        + [("C-LAST-WEEK", NOW - 8 * DAY, Decimal("3"), "actual")]
        + _twice_daily("D-GAP", NOW - 100 * WEEK, NOW - 92 * WEEK)  # then 14 months silent
        + _twice_daily("D-GAP", NOW - 32 * WEEK, NOW - 26 * WEEK)  # and silent for six months since
        + [("E-ONE", NOW - 40 * WEEK + timedelta(minutes=17), Decimal("5.5"), "actual")]
        + [
            ("F-ANCIENT", NOW - 7 * 365 * DAY, Decimal("1"), "actual"),
            ("F-ANCIENT", NOW - 3 * 365 * DAY, Decimal("2"), "estimated"),
        ]
        + _twice_daily("I-OFFLINE", NOW - 3 * WEEK, NOW - 2 * WEEK)
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO meters (meter_id, registered, dma, role, bulk, has_readings)"
                    " VALUES (%s, true, 'D1', %s, %s, %s)",
                    METERS,
                )
                cur.executemany(
                    "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason, gateway_id)"
                    " VALUES (%s, %s, %s, %s, CASE WHEN %s <> 'actual' THEN 'vee' END,"
                    " CASE WHEN %s <> 'actual' THEN 'gap' END, CASE WHEN %s = 'actual' THEN 'GW1' END)",
                    [(m, ts, v, q, q, q, q) for m, ts, v, q in reads],
                )
            # F-ANCIENT's latest reading an estimate (no gateway): it is named by the gateway assigned last
            conn.execute(
                "INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by) VALUES ('F-ANCIENT', 'GW2', 'test')"
            )
            conn.execute(
                "INSERT INTO events (meter_id, ts, event, gateway_id) VALUES ('I-OFFLINE', %s, 'meter_offline', 'GW1')",
                (NOW - 2 * WEEK + DAY,),
            )
            conn.execute("ANALYZE")
        yield url
    finally:
        drop_database(timescale_admin_url, url)


@pytest.fixture(scope="module")
def conn(meters_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Rows as dicts, as the server's connections give them."""
    with psycopg.connect(meters_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def test_the_fixture_spreads_its_readings_over_many_chunks(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert row is not None and row["n"] > 100
    listed = unbounded_list_meters(conn, None, 100)
    assert [r["meter_id"] for r in listed] == IDS
    assert {r["meter_id"] for r in listed if r["latest_ts"] is None} == {"G-NEVER", "H-UNKNOWN"}
    assert [r["meter_id"] for r in listed if r["offline_since"] is not None] == ["I-OFFLINE"]


_INSTANTS = st.datetimes(
    min_value=(NOW - 8 * 365 * DAY).replace(tzinfo=None),
    max_value=(NOW + 2 * 365 * DAY).replace(tzinfo=None),
    timezones=st.just(UTC),
)
#: the instants the fixture's reads fall at or near, where a list's bound changes what it lists
_NEAR_READS = st.sampled_from(
    [NOW, NOW - DAY, NOW + DAY, NOW - 8 * DAY, NOW - 3 * WEEK, NOW - 26 * WEEK, NOW - 3 * 365 * DAY]
).flatmap(lambda at: st.integers(-90, 90).map(lambda minutes: at + timedelta(minutes=minutes)))


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    after=st.one_of(st.none(), st.sampled_from(IDS), st.text(alphabet="ABCDEFGHIJ-Z", max_size=3)),
    limit=st.integers(1, 13),
    since=st.one_of(st.none(), _INSTANTS, _NEAR_READS),
)
def test_the_list_is_the_one_looking_everywhere_gives(
    conn: psycopg.Connection[Any], after: str | None, limit: int, since: datetime | None
) -> None:
    """Whatever the page (after which meter, how many) and whatever ``not_read_since``: the same rows,
    every column, in the same order."""
    assert repository.list_meters(conn, after, limit, since) == unbounded_list_meters(conn, after, limit, since)


def _chunks_planned(conn: psycopg.Connection[Any], statements: list[tuple[str, Any]]) -> list[int]:
    """For each statement that reads readings, how many of its chunks its plan names."""
    chunks = {
        row["chunk_name"]
        for row in conn.execute(
            "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        )
    }
    planned: list[int] = []
    for query, params in statements:
        if "readings r" not in query:
            continue
        row = conn.execute("EXPLAIN " + query, params).fetchall()
        names = re.findall(r" on (_hyper_\d+_\d+_chunk)\b", "\n".join(r["QUERY PLAN"] for r in row))
        planned.append(sum(1 for name in names if name in chunks))
    return planned


def test_a_list_of_meters_read_this_week_plans_a_few_chunks_of_readings(
    meters_url: str, conn: psycopg.Connection[Any]
) -> None:
    """GET /meters' page of three meters read this week (A-…; the list asks for one more, to know whether
    there are more: B-AHEAD, read up to a day ahead) runs one statement that reads readings, and it plans
    at most 3 chunks of them (the week's, one or two, and the one a day ahead), of the fixture's more than
    100. Before, it planned them all."""
    key = create_api_key(conn, "desk", ["admin"])
    with TestClient(create_app(meters_url)) as client, statements_run() as statements:
        answer = client.get("/meters?limit=3", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [item["meter_id"] for item in items] == IDS[:3] and all(item["latest"] for item in items), items
    planned = _chunks_planned(conn, statements)
    assert len(planned) == 1 and planned[0] <= 3, (planned, statements)


def test_the_whole_list_plans_each_chunk_of_readings_it_reaches_about_once(
    meters_url: str, conn: psycopg.Connection[Any]
) -> None:
    """A guard (the one look planned every chunk once too): the web meters page lists every meter of the
    fixture, F-ANCIENT read last three years ago and H-UNKNOWN (no readings, though it may have) among
    them, and its statements, one a span further and further back, plan each chunk of readings about
    once in all (the spans meet at their bounds: a chunk across one is planned by both), not every chunk
    each."""
    key = create_api_key(conn, "care", ["customer_care"])
    with TestClient(create_app(meters_url)) as client, statements_run() as statements:
        answer = client.get("/", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert all(meter_id in answer.text for meter_id in IDS), answer.text
    total = conn.execute(
        "SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert total is not None
    planned = _chunks_planned(conn, statements)
    assert sum(planned) <= total["n"] + 2 * len(planned), planned
