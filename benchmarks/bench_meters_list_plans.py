"""GET /meters with each listed meter's latest reading looked for between bounds known when the query is
planned (server.meters.repository.list_meters: within 7 days of now in the list's query, then further back
in spans for the meters not found there, all of them in each span's one query), against the same list
asked as before (:func:`unbounded_list_meters`, the old query): one look per meter with no bound on time,
for which TimescaleDB planned every chunk of readings (7 days each), once per list. One fresh database with
``--meters`` meters read hourly for ``--days`` days up to this hour (benchmarks.bench_meter_page_days'
fill); GET /meters?limit=``--limit`` through the real app (a TestClient), the two ways in turn,
``--repeat`` times each; then the list's statements, each way's, planned by PostgreSQL (``EXPLAIN
(SUMMARY)``, summed over the statements a way runs), ``--repeat`` times in turn. Printed: each way's
median answer time and planning time, and their ratios (new against old).

    python -m benchmarks.bench_meters_list_plans [--meters 20] [--days 1095] [--limit 20] [--repeat 21]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from benchmarks.bench_meter_page_days import fill
from benchmarks.bench_meter_page_plans import planning_ms
from benchmarks.pages_in_turn import medians_in_turn_of
from collector.migrate import migrate
from server.app import create_app
from server.auth import create_api_key
from server.meters import repository
from tests.query_plans import statements_run
from tests.services import admin_url, create_database, drop_database


def unbounded_list_meters(
    conn: psycopg.Connection[Any], after: str | None, limit: int, not_read_since: datetime | None = None
) -> list[dict[str, Any]]:
    """list_meters as it was: each meter's latest reading in one look with no bound on time."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {repository._METER_COLUMNS} FROM meters m {repository._latest_join()} {repository._ASSIGNED} "
            f"{repository._LINK} "
            "WHERE (%(after)s::text IS NULL OR m.meter_id > %(after)s) "
            "AND (%(since)s::timestamptz IS NULL OR latest.ts IS NULL OR latest.ts < %(since)s) "
            "ORDER BY m.meter_id LIMIT %(limit)s",
            {"after": after, "limit": limit, "since": not_read_since},
        )
        .fetchall()
    )


NEW, OLD = "bounded", "unbounded"
WAYS: dict[str, Callable[..., list[dict[str, Any]]]] = {NEW: repository.list_meters, OLD: unbounded_list_meters}


@contextmanager
def listing_as(way: str) -> Iterator[None]:
    """server.meters.repository.list_meters as ``way`` has it inside the block (the routers call it through
    the module), the new one back after it whatever happens."""
    try:
        setattr(repository, "list_meters", WAYS[way])  # noqa: B010
        yield
    finally:
        setattr(repository, "list_meters", WAYS[NEW])  # noqa: B010


def list_ms(client: TestClient, key: str, limit: int) -> float:
    """One GET /meters, in milliseconds (wall clock, the whole answer read), checked to list ``limit``
    meters, each with its latest reading."""
    started = time.perf_counter()
    answer = client.get(f"/meters?limit={limit}", headers={"Authorization": f"Bearer {key}"})
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text[:300]
    items = answer.json()["items"]
    assert len(items) == limit and all(item["latest"] is not None for item in items), answer.text[:300]
    return elapsed


def list_statements(conn: psycopg.Connection[Any], way: str, limit: int) -> list[tuple[str, Any]]:
    """The statements ``way``'s list runs for GET /meters' first page."""
    with statements_run() as recorded:
        WAYS[way](conn, None, limit + 1)
    return recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    limit = min(args.limit, args.meters)
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, args.meters, args.days, this_hour)  # meters read now, as most are
            key = create_api_key(conn, "desk", ["admin"])
            chunks = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
            ).fetchone()
        with TestClient(create_app(url)) as client:

            def listed(way: str) -> list[float]:
                with listing_as(way):
                    return [list_ms(client, key, limit)]

            answer = medians_in_turn_of(WAYS, listed, args.repeat)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as planner:
            planner.execute("SET jit = off")  # as the server's pool has it
            plan = medians_in_turn_of(
                WAYS,
                lambda way: [planning_ms(planner, list_statements(planner, way, limit))],
                args.repeat,
                warm_up=False,
            )
        print(
            f"{args.meters} meters read hourly for {args.days} days ({chunks[0] if chunks else '?'} chunks of "
            f"readings); GET /meters?limit={limit}, {args.repeat} times each way, in turn"
        )
        print(
            f"meters list with bounded reads: median {answer[NEW]:.2f} ms against {answer[OLD]:.2f} ms unbounded: "
            f"{answer[NEW] / answer[OLD]:.2f}x"
        )
        print(
            f"its statements planned in {plan[NEW]:.2f} ms against {plan[OLD]:.2f} ms unbounded: "
            f"{plan[NEW] / plan[OLD]:.2f}x"
        )
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
