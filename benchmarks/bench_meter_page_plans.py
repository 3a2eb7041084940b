"""The meter page (/care/meters/{id}) with its latest reading, readings and first reading each looked for
between bounds known when the query is planned (server.meters.repository: get_meter, readings_newest_first,
first_reading, in spans), against the same page with those three asked as before, each in one look with
no bound on time (:data:`UNBOUNDED`, the old queries): TimescaleDB then planned every chunk of readings
(7 days each) for each. One fresh database with ``--meters`` meters read hourly for ``--days`` days up to
this hour (benchmarks.bench_meter_page_days' fill); one meter's page asked through the real app (a
TestClient), the two ways in turn (benchmarks.pages_in_turn), ``--repeat`` times each; then the three
reads' statements, each way's, planned by PostgreSQL (``EXPLAIN (SUMMARY)``: its own planning time, summed
over the statements a way runs), ``--repeat`` times in turn. Printed: each way's median page time and
planning time, and their ratios (new against old).

    python -m benchmarks.bench_meter_page_plans [--meters 3] [--days 1095] [--repeat 21]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from benchmarks.bench_meter_page_days import fill
from benchmarks.pages_in_turn import medians_in_turn_of
from collector.migrate import migrate
from server.app import create_app
from server.auth import create_api_key
from server.meters import repository
from tests.query_plans import statements_run
from tests.services import admin_url, create_database, drop_database


def unbounded_get_meter(conn: psycopg.Connection[Any], meter_id: str) -> dict[str, Any] | None:
    """get_meter as it was: its latest reading in one look with no bound on time."""
    return conn.execute(
        f"SELECT {repository._METER_COLUMNS} FROM meters m {repository._latest_join()} {repository._ASSIGNED} "
        f"{repository._LINK} WHERE m.meter_id = %s",
        (meter_id,),
    ).fetchone()


def unbounded_first_reading(conn: psycopg.Connection[Any], meter_id: str) -> dict[str, Any] | None:
    """first_reading as it was: one look, oldest first, with no bound on time."""
    return conn.execute(
        """
        SELECT first.* FROM meters m CROSS JOIN LATERAL (
            SELECT ts, volume_m3, quality FROM readings r
            WHERE m.has_readings AND r.meter_id = m.meter_id ORDER BY ts LIMIT 1
        ) first
        WHERE m.meter_id = %s
        """,
        (meter_id,),
    ).fetchone()


def unbounded_readings_newest_first(
    conn: psycopg.Connection[Any], meter_id: str, before: datetime | None, limit: int, newest: datetime | None = None
) -> list[dict[str, Any]]:
    """readings_newest_first as it was: one look, newest first, bounded by the cursor alone (``newest``,
    the new function's hint, is not used)."""
    return conn.execute(
        f"""
        SELECT ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality, quality_by, quality_by_key_id,
               quality_reason, quality_overrode, {repository.OVERRODE_AT}
        FROM readings
        WHERE meter_id = %(meter_id)s AND (%(before)s::timestamptz IS NULL OR ts < %(before)s)
        ORDER BY ts DESC LIMIT %(limit)s
        """,
        {"meter_id": meter_id, "before": before, "limit": limit},
    ).fetchall()


#: The three reads as they were, by their names in server.meters.repository.
UNBOUNDED: dict[str, Callable[..., Any]] = {
    "get_meter": unbounded_get_meter,
    "readings_newest_first": unbounded_readings_newest_first,
    "first_reading": unbounded_first_reading,
}
NEW, OLD = "bounded", "unbounded"
WAYS: dict[str, dict[str, Callable[..., Any]]] = {
    NEW: {name: getattr(repository, name) for name in UNBOUNDED},
    OLD: UNBOUNDED,
}
READINGS_SHOWN = 49  # the page's 48, and one more to know whether there are older


@contextmanager
def reads_as(way: str) -> Iterator[None]:
    """server.meters.repository's three reads as ``way`` has them inside the block (the page calls them
    through the module), the new ones back after it whatever happens."""
    try:
        for name, function in WAYS[way].items():
            setattr(repository, name, function)
        yield
    finally:
        for name, function in WAYS[NEW].items():
            setattr(repository, name, function)


def page_ms(client: TestClient, key: str, meter_id: str) -> float:
    """One view of the meter's page, in milliseconds (wall clock, the whole answer read)."""
    started = time.perf_counter()
    answer = client.get(f"/care/meters/{meter_id}", headers={"Authorization": f"Bearer {key}"})
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200 and "First reading" in answer.text, answer.text[:300]
    return elapsed


def page_reads(conn: psycopg.Connection[Any], way: str, meter_id: str) -> list[tuple[str, Any]]:
    """The statements the page's three reads run, ``way``'s, for the meter's newest page (checked to find
    its latest reading, readings and first reading)."""
    functions = WAYS[way]
    with statements_run() as recorded:
        meter = functions["get_meter"](conn, meter_id)
        shown = functions["readings_newest_first"](conn, meter_id, None, READINGS_SHOWN, meter["latest_ts"])
        first = functions["first_reading"](conn, meter_id)
    assert meter["latest_ts"] is not None and len(shown) == READINGS_SHOWN and first is not None, way
    return recorded


def planning_ms(conn: psycopg.Connection[Any], statements: list[tuple[str, Any]]) -> float:
    """PostgreSQL's planning time of the statements, summed (``EXPLAIN (SUMMARY)``: planned, not run)."""
    total = 0.0
    for query, params in statements:
        row = conn.execute("EXPLAIN (SUMMARY, FORMAT JSON) " + query, params).fetchone()
        assert row is not None
        (explained,) = row.values()
        plan = explained if isinstance(explained, list) else json.loads(explained)
        total += float(plan[0]["Planning Time"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=3)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, args.meters, args.days, this_hour)  # a meter read now, as most are
            key = create_api_key(conn, "care", ["customer_care"])
            chunks = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
            ).fetchone()
        meter = f"M-{(args.meters + 1) // 2}"
        with TestClient(create_app(url)) as client:

            def viewed(way: str) -> list[float]:
                with reads_as(way):
                    return [page_ms(client, key, meter)]

            page = medians_in_turn_of(WAYS, viewed, args.repeat)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as planner:
            planner.execute("SET jit = off")  # as the server's pool has it
            assert page_reads(planner, NEW, meter)[1:] != []  # (the new way runs more than one statement)
            plan = medians_in_turn_of(
                WAYS, lambda way: [planning_ms(planner, page_reads(planner, way, meter))], args.repeat, warm_up=False
            )
        print(
            f"{args.meters} meters read hourly for {args.days} days ({chunks[0] if chunks else '?'} chunks of "
            f"readings); {meter}'s page, {args.repeat} times each way, in turn"
        )
        print(
            f"meter page with bounded reads: median {page[NEW]:.2f} ms against {page[OLD]:.2f} ms unbounded: "
            f"{page[NEW] / page[OLD]:.2f}x"
        )
        print(
            f"its latest reading, readings and first reading planned in {plan[NEW]:.2f} ms against "
            f"{plan[OLD]:.2f} ms unbounded: {plan[NEW] / plan[OLD]:.2f}x"
        )
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
