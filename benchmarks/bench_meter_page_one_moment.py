"""The meter page (/care/meters/{id}) read in one moment (server.snapshot: its queries in one read-only
REPEATABLE READ transaction) against the same page read query by query, each on its own (autocommit,
as before): what the snapshot's BEGIN, SET TRANSACTION and COMMIT cost a page. One fresh database with
``--meters`` meters read hourly for ``--days`` days (benchmarks.bench_meter_page_days' fill); the page
of one meter asked through the real app (a TestClient), the two ways in turn, ``--repeat`` times each;
printed: each way's median and their ratio (1: the snapshot costs the page nothing).

    python -m benchmarks.bench_meter_page_one_moment [--meters 3] [--days 365] [--repeat 41]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from benchmarks.bench_meter_page_days import fill
from collector.migrate import migrate
from server.app import create_app
from server.auth import create_api_key
from server.web import meter_page
from tests.services import admin_url, create_database, drop_database


def page_ms(client: TestClient, key: str, meter_id: str) -> float:
    """One view of the meter's page, in milliseconds (wall clock, the whole answer read)."""
    started = time.perf_counter()
    answer = client.get(f"/care/meters/{meter_id}", headers={"Authorization": f"Bearer {key}"})
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200 and "Daily consumption" in answer.text, answer.text[:300]
    return elapsed


def query_by_query(_conn: psycopg.Connection[Any]) -> AbstractContextManager[None]:
    """The baseline: no snapshot, each of the page's queries on its own as before."""
    return nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=3)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=41)
    args = parser.parse_args()
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, args.meters, args.days)
            key = create_api_key(conn, "care", ["customer_care"])
        meter = f"M-{(args.meters + 1) // 2}"
        snapshot: Callable[[psycopg.Connection[Any]], AbstractContextManager[None]] = meter_page.one_moment
        ways = {"one moment": snapshot, "query by query": query_by_query}
        times: dict[str, list[float]] = {way: [] for way in ways}
        with TestClient(create_app(url)) as client:
            for moment in ways.values():  # a first view each, unmeasured: the pool's connection made
                meter_page.one_moment = moment  # type: ignore[assignment]
                page_ms(client, key, meter)
            for _ in range(args.repeat):  # in turn, so that the machine's load falls on both alike
                for way, moment in ways.items():
                    meter_page.one_moment = moment  # type: ignore[assignment]
                    times[way].append(page_ms(client, key, meter))
        meter_page.one_moment = snapshot  # type: ignore[assignment]
        one, each = statistics.median(times["one moment"]), statistics.median(times["query by query"])
        print(f"{args.meters} meters read hourly for {args.days} days; {meter}'s page, {args.repeat} times each way")
        print(f"meter page in one moment: median {one:.2f} ms against {each:.2f} ms query by query: {one / each:.2f}x")
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
