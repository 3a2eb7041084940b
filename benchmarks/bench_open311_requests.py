"""Open311's GET requests.json for a customers' app beside customer care's, and POST requests.json's
claim of a retry (server.open311.repository, server migration 0062), on a filled database.

Fills ``--enquiries`` enquiries opened over the last 90 days (GET requests.json's default window), 2%
of them raised through Open311 by three apps (``fixit app`` raising half of those), and times, best
of five, the listing as customer care reads it (every request: the baseline, the query as it was
before apps could read) and as ``fixit app`` reads it (its own: the same query, each row asked whether
the app raised it), both the newest 1,000; then the time to raise a request (claim, enquiry, what was
given, first update) and to answer its retry (the claim alone), the median of ``--posts``.

    python -m benchmarks.bench_open311_requests                 # a fresh database on the test server
    python -m benchmarks.bench_open311_requests --enquiries 20000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from collector.migrate import migrate
from server.open311 import repository
from server.open311.schemas import RequestIn
from tests.services import admin_url, create_database, drop_database

WINDOW = timedelta(days=90)
APPS = ("fixit app", "other app", "third app")


def fill(conn: psycopg.Connection[Any], enquiries: int) -> None:
    """``enquiries`` over the last 90 days; 2% raised through Open311 as customers, half of those by
    ``fixit app``, the rest by the other two. Seeded."""
    conn.execute("SELECT setseed(0.31)")
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, opened_at, updated_at)
        SELECT 'service_request', 'street leak', CASE WHEN random() < 0.02 THEN 'customer' ELSE 'detection' END,
               'open', 'high', 'Leak in the street', at, at
        FROM (SELECT now() - random() * interval '89 days' AS at FROM generate_series(1, %s)) e
        """,
        (enquiries,),
    )
    conn.execute(
        """
        INSERT INTO open311_requests (enquiry_id, service_code, description, address_string, raised_by)
        SELECT enquiry_id, 'leak_street', 'Water coming up through the road', enquiry_id || ' High St',
               CASE WHEN random() < 0.5 THEN 'fixit app' WHEN random() < 0.5 THEN 'other app' ELSE 'third app' END
        FROM enquiries WHERE source = 'customer'
        """
    )
    conn.execute(
        "INSERT INTO enquiry_updates (enquiry_id, by, note) SELECT enquiry_id, 'detection', 'raised' FROM enquiries"
    )
    conn.execute("VACUUM ANALYZE enquiries, open311_requests, enquiry_updates")


def _best_ms(runs: int, measure: Any) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(measure())
        best = min(best, (time.perf_counter() - started) * 1000)
    return best, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--enquiries", type=int, default=150_000)
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args(argv)
    admin = admin_url()
    url = create_database(admin)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as dict_rows:
            conn: Any = dict_rows  # the server's pool lends dict rows; the repository is typed for any
            fill(conn, args.enquiries)
            end = datetime.now(UTC)
            start = end - WINDOW

            def listed(raised_by: str | None) -> list[dict[str, Any]]:
                return repository.list_requests(
                    conn, ids=None, service_codes=None, statuses=None, start=start, end=end, limit=1000,
                    raised_by=raised_by,
                )  # fmt: skip

            care_ms, care_rows = _best_ms(5, lambda: listed(None))
            app_ms, app_rows = _best_ms(5, lambda: listed("fixit app"))
            service = repository.get_service(conn, "leak_street")
            assert service is not None
            raise_ms: list[float] = []
            retry_ms: list[float] = []
            for n in range(args.posts):
                request = RequestIn(service_code="leak_street", description=f"leak {n}", address_string="1 High St")
                for times in (raise_ms, retry_ms):
                    started = time.perf_counter()
                    repository.raise_request(
                        conn, request, service, source="customer", by="fixit app", by_key_id="bench"
                    )
                    times.append((time.perf_counter() - started) * 1000)
            stored = conn.execute("SELECT count(*) AS n FROM open311_posts").fetchone()
            assert stored is not None and stored["n"] == args.posts, stored  # each retry raised nothing
        print(
            json.dumps(
                {
                    "enquiries": args.enquiries,
                    "care_list_ms": round(care_ms, 1),
                    "care_list_rows": care_rows,
                    "app_list_ms": round(app_ms, 1),
                    "app_list_rows": app_rows,
                    "app_over_care": round(app_ms / care_ms, 2),
                    "raise_median_ms": round(statistics.median(raise_ms), 2),
                    "retry_median_ms": round(statistics.median(retry_ms), 2),
                },
                indent=1,
            )
        )
        print(
            f"an app's own newest 1,000 against customer care's: {app_ms / care_ms:.2f}x the time "
            f"({app_ms:.1f} ms, {care_ms:.1f} ms); a retry answered in {statistics.median(retry_ms):.2f} ms, "
            f"a request raised in {statistics.median(raise_ms):.2f} ms"
        )
    finally:
        drop_database(admin, url)


if __name__ == "__main__":
    main()
