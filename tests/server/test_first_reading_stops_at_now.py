"""A meter's first reading (server.meters.repository.first_reading, the meter page's "First reading") is
looked for in spans forward from about where its readings begin, each between bounds known when its query
is planned, and no span starts after now: the one reaching past now is the last, unbounded above. Before,
the spans went on past now one by one to the calendar's 5-year reach: a meter flagged as having readings
that has none (``meters.has_readings`` is never set back: readings withdrawn leave it true) ran all ten,
those after now each finding nothing by construction.

The oracle is the old one look at all of a meter's readings (benchmarks.bench_meter_page_plans.UNBOUNDED),
whatever the meter's ``first_seen`` and wherever its readings are: none, in the past, or ahead of now (a
gateway's clock ahead, or further)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from benchmarks.bench_meter_page_plans import UNBOUNDED
from server.meters import repository
from tests.query_plans import statements_run
from tests.services import create_database, drop_database

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def conn(timescale_admin_url: str, migrated_template: str) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own, M its one meter (its readings and ``first_seen`` set by each example);
    autocommit, rows as dicts, as the server's pool lends them."""
    url = create_database(timescale_admin_url, migrated_template)
    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as connection:
            connection.execute("INSERT INTO meters (meter_id, registered, has_readings) VALUES ('M', true, true)")
            yield connection
    finally:
        drop_database(timescale_admin_url, url)


_DAYS_FROM_NOW = st.integers(-4 * 365, 3 * 365)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first_seen=_DAYS_FROM_NOW,
    readings=st.lists(st.one_of(_DAYS_FROM_NOW, st.integers(0, 1)), max_size=3, unique=True),
)
def test_the_first_reading_is_the_one_looking_everywhere_finds_and_no_span_starts_after_now(
    conn: psycopg.Connection[Any], first_seen: int, readings: list[int]
) -> None:
    """``first_seen`` and the readings in days from now (none: a meter flagged as maybe having readings
    that has none)."""
    with conn.transaction():
        conn.execute("DELETE FROM readings WHERE meter_id = 'M'")
        conn.execute("UPDATE meters SET first_seen = %s WHERE meter_id = 'M'", (NOW + first_seen * DAY,))
        for n, days in enumerate(sorted(readings)):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, gateway_id) VALUES ('M', %s, %s, 'GW1')",
                (NOW + days * DAY + timedelta(minutes=7), 10 + n),
            )
    with statements_run() as statements:
        found = repository.first_reading(conn, "M")
    looked_until = datetime.now(UTC)
    assert found == UNBOUNDED["first_reading"](conn, "M")
    lows = [params["low"] for query, params in statements if "FROM readings" in query and isinstance(params, dict)]
    assert lows, statements
    assert [low for low in lows if low is not None and low > looked_until] == [], lows
