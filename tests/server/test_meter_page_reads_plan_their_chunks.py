"""The meter page's latest reading, readings and first reading are looked for between bounds known when
each query is planned (server.meters.repository: in spans), and are the same as the one look at all of a
meter's readings found them. Before, each of the three was one look with no bound on time (the newest
page's readings none but the cursor): TimescaleDB planned every chunk of readings (7 days each) for each,
3.7-4.0 ms of planning against 0.2-0.4 ms of running on three years of hourly reads, growing by the week.

The oracles are the old queries themselves (benchmarks.bench_meter_page_plans.UNBOUNDED), asked of one
database whose meters' readings spread over many chunks: a meter read twice a day for two years up to
this hour, one read long ago then silent for months then read again and silent since, one read once, one
whose consumption was stored before its first readings were taken away, one read seven years ago and
three years ago only (the last an estimate: no gateway; one assigned), one registered and never read,
and one recorded by other means (it may have readings, as far as ``meters`` knows) without any. The
plans are PostgreSQL's own (EXPLAIN): each statement the page runs is counted by the chunks of readings
its plan names."""

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

from benchmarks.bench_meter_page_plans import UNBOUNDED
from server.app import create_app
from server.auth import create_api_key
from server.meters import repository
from server.snapshot import one_moment
from tests.query_plans import statements_run
from tests.services import create_database, drop_database

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
METERS = ("LONG", "GAP", "ONE", "PRUNED", "ANCIENT", "NEVER", "UNKNOWN")


def _twice_daily(meter_id: str, since: datetime, until: datetime) -> list[tuple[str, datetime, Decimal, str]]:
    """Reads at 06:00 and 18:00 from ``since`` up to ``until``, 0.010 m³ up each time, every ninth estimated."""
    reads, ts, n = [], since.replace(hour=6), 0
    while ts <= until:
        reads.append((meter_id, ts, Decimal("100") + n * Decimal("0.010"), "estimated" if n % 9 == 4 else "actual"))
        ts, n = ts + timedelta(hours=12), n + 1
    return reads


@pytest.fixture(scope="module")
def readings_url(timescale_admin_url: str, migrated_template: str) -> Iterator[str]:
    """One database for the module's tests, its meters' readings as the module's docstring says."""
    url = create_database(timescale_admin_url, migrated_template)
    reads = (
        _twice_daily("LONG", NOW - 104 * WEEK, NOW)
        + _twice_daily("GAP", NOW - 100 * WEEK, NOW - 92 * WEEK)  # then 14 months silent
        + _twice_daily("GAP", NOW - 32 * WEEK, NOW - 26 * WEEK)  # and silent for six months since
        + [("ONE", NOW - 40 * WEEK + timedelta(minutes=17), Decimal("5.5"), "actual")]
        + _twice_daily("PRUNED", NOW - 60 * WEEK, NOW - 50 * WEEK)
        + [
            ("ANCIENT", NOW - 7 * 365 * DAY, Decimal("1"), "actual"),
            ("ANCIENT", NOW - 3 * 365 * DAY, Decimal("2"), "estimated"),
        ]
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO meters (meter_id, registered, has_readings)"
                " SELECT m, true, m <> 'NEVER' FROM unnest(%s::text[]) m",
                (list(METERS),),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason, gateway_id)"
                    " VALUES (%s, %s, %s, %s, CASE WHEN %s <> 'actual' THEN 'vee' END,"
                    " CASE WHEN %s <> 'actual' THEN 'gap' END, CASE WHEN %s = 'actual' THEN 'GW1' END)",
                    [(m, ts, v, q, q, q, q) for m, ts, v, q in reads],
                )
            # ANCIENT's latest reading an estimate (no gateway): it is named by the gateway assigned last
            conn.execute(
                "INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by) VALUES ('ANCIENT', 'GW2', 'test')"
            )
            conn.execute("SELECT refresh_consumption(%s, %s)", (NOW - 8 * 365 * DAY, NOW + DAY))
            # PRUNED's consumption was stored from reads since taken away: its first stored day is older
            # than its first reading now
            conn.execute("DELETE FROM readings WHERE meter_id = 'PRUNED' AND ts < %s", (NOW - 55 * WEEK,))
            conn.execute("ANALYZE")
        yield url
    finally:
        drop_database(timescale_admin_url, url)


@pytest.fixture(scope="module")
def conn(readings_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Rows as dicts, as the server's connections give them."""
    with psycopg.connect(readings_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def test_the_fixture_spreads_its_readings_over_many_chunks(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert row is not None and row["n"] > 100
    found = conn.execute("SELECT meter_id, count(*) AS n FROM readings GROUP BY meter_id").fetchall()
    assert {r["meter_id"]: r["n"] for r in found}.keys() == set(METERS) - {"NEVER", "UNKNOWN"}


@pytest.mark.parametrize("meter_id", [*METERS, "NO-SUCH-METER"])
def test_the_meter_and_its_first_reading_are_the_ones_looking_everywhere_finds(
    conn: psycopg.Connection[Any], meter_id: str
) -> None:
    assert repository.get_meter(conn, meter_id) == UNBOUNDED["get_meter"](conn, meter_id)
    assert repository.first_reading(conn, meter_id) == UNBOUNDED["first_reading"](conn, meter_id)


_INSTANTS = st.datetimes(
    min_value=(NOW - 8 * 365 * DAY).replace(tzinfo=None),
    max_value=(NOW + 2 * 365 * DAY).replace(tzinfo=None),
    timezones=st.just(UTC),
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    meter_id=st.sampled_from([*METERS, "NO-SUCH-METER"]),
    before=st.one_of(st.none(), _INSTANTS),
    newest=st.one_of(st.none(), _INSTANTS),
    limit=st.integers(1, 120),
)
def test_the_readings_newest_first_are_the_ones_looking_everywhere_finds(
    conn: psycopg.Connection[Any], meter_id: str, before: datetime | None, newest: datetime | None, limit: int
) -> None:
    """Whatever the cursor and the page's size, and wherever the hint of the newest (the meter's latest
    reading, on the page) says they begin, right or wrong."""
    found = repository.readings_newest_first(conn, meter_id, before, limit, newest)
    assert found == UNBOUNDED["readings_newest_first"](conn, meter_id, before, limit)


def test_the_page_of_a_meter_read_for_two_years_plans_a_few_chunks_of_readings(
    readings_url: str, conn: psycopg.Connection[Any]
) -> None:
    """Every statement the page of LONG runs (read twice a day for two years, up to this hour: 105
    weekly chunks, of the fixture's 107) plans at most 8 chunks of readings, and all of them 24. Before,
    its latest reading, its readings and its first reading each planned all 107."""
    key = create_api_key(conn, "care", ["customer_care"])
    with TestClient(create_app(readings_url)) as client, statements_run() as statements:
        answer = client.get("/care/meters/LONG", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert re.search(r"First reading</dt>\s*<dd[^>]*>[^<]*" + f"{(NOW - 104 * WEEK):%Y-%m-%d}", answer.text), (
        answer.text
    )
    chunks = {
        row["chunk_name"]
        for row in conn.execute(
            "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        )
    }
    planned: list[int] = []
    for query, params in statements:
        if "readings" not in query:
            continue
        row = conn.execute("EXPLAIN " + query, params).fetchall()
        names = re.findall(r" on (_hyper_\d+_\d+_chunk)\b", "\n".join(r["QUERY PLAN"] for r in row))
        planned.append(sum(1 for name in names if name in chunks))
    assert len(planned) >= 3, statements
    assert max(planned) <= 8 and sum(planned) <= 24, planned


def _reads_of_readings(statements: list[tuple[str, Any]]) -> list[str]:
    """The statements among ``statements`` that read the readings table."""
    return [query for query, _ in statements if re.search(r"\bFROM readings\b", query)]


@pytest.mark.parametrize("meter_id", ["NEVER", "UNKNOWN"])
@pytest.mark.parametrize("before", ["", (NOW - WEEK).isoformat()], ids=["newest", "a cursor"])
def test_the_page_of_a_meter_without_readings_looks_for_none_but_its_latest(
    readings_url: str, conn: psycopg.Connection[Any], meter_id: str, before: str
) -> None:
    """The page of a meter without a latest reading (never read, or recorded as maybe having readings
    that has none) reads the readings table for get_meter's look at its latest only: within the page's
    one moment, no latest reading is no reading, and its readings (newest first) are not looked for.
    Before, they were, in 10 spans back to the calendar's start, each finding nothing."""
    with one_moment(conn), statements_run() as statements:
        meter = repository.get_meter(conn, meter_id)
    assert meter is not None and meter["latest_ts"] is None
    latest_look = _reads_of_readings(statements)
    key = create_api_key(conn, "care", ["customer_care"])
    with TestClient(create_app(readings_url)) as client, statements_run() as statements:
        answer = client.get(
            f"/care/meters/{meter_id}",
            params={"before": before} if before else None,
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 200, answer.text
    assert UNBOUNDED["readings_newest_first"](conn, meter_id, None, 1) == []
    assert _reads_of_readings(statements) == latest_look, statements
