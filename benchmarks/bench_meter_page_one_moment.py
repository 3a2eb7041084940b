"""The meter page (/care/meters/{id}) read in one moment (server.snapshot: its queries in one read-only
REPEATABLE READ transaction) against the same page read query by query, each on its own (autocommit,
as before): what the snapshot's BEGIN and COMMIT cost a page. One fresh database with
``--meters`` meters read hourly for ``--days`` days (benchmarks.bench_meter_page_days' fill); the page
of one meter asked through the real app (a TestClient), the two ways in turn, ``--repeat`` times each;
printed: each way's median and their ratio (1: the snapshot costs the page nothing).

    python -m benchmarks.bench_meter_page_one_moment [--meters 3] [--days 365] [--repeat 41]
"""

from __future__ import annotations

import argparse
import time

import psycopg
from fastapi.testclient import TestClient

from benchmarks.bench_meter_page_days import fill
from benchmarks.pages_in_turn import ONE_MOMENT, QUERY_BY_QUERY, medians_in_turn
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
        with TestClient(create_app(url)) as client:
            medians = medians_in_turn(meter_page, lambda: [page_ms(client, key, meter)], args.repeat)
        one, each = medians[ONE_MOMENT], medians[QUERY_BY_QUERY]
        print(f"{args.meters} meters read hourly for {args.days} days; {meter}'s page, {args.repeat} times each way")
        print(f"meter page in one moment: median {one:.2f} ms against {each:.2f} ms query by query: {one / each:.2f}x")
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
