"""A landlord's move-out dated back, as a billing system's changed_since pull pages it.

One account supplied at ``--units`` service points, each with its meter read hourly for ``--days``
days; the pull's next_changed_since is taken, then every agreement is ended a third of the way into
the period (recorded late), which removes the rest of the period's reads from the account. Prints the
time of the pull's first ``--pages`` pages of 1,000 (server.billing.repository.changes_page and the
merge, as GET /billing/reads runs them), and of an ordinary pull's page, 20 reads rewritten since.
The baseline, in the same run: the same pages asked over the whole period, every key the move-out
left worked out and the first 1,000 kept, as each page was asked before ``changes_page``; the ratios
of the two ways' median and first pages.

    python -m benchmarks.bench_billing_move_out                    # 1,000 units, 30 days
    python -m benchmarks.bench_billing_move_out --units 200 --days 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from collector.migrate import migrate
from server.billing import repository
from tests.services import admin_url, create_database, drop_database

START = datetime(2026, 11, 1, tzinfo=UTC)
LIMIT = 1000


def fill(conn: psycopg.Connection[Any], units: int, days: int) -> None:
    unit = "lpad(i::text, 5, '0')"
    conn.execute("INSERT INTO accounts (account_id, name) VALUES ('LL', 'landlord')")
    conn.execute(
        f"INSERT INTO meters (meter_id, registered) SELECT 'M-' || {unit}, true FROM generate_series(1, %s) i", (units,)
    )
    conn.execute(
        f"INSERT INTO service_points (service_point_id) SELECT 'SP-' || {unit} FROM generate_series(1, %s) i", (units,)
    )
    conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        f" SELECT 'LL', 'SP-' || {unit}, '2025-01-01Z' FROM generate_series(1, %s) i",
        (units,),
    )
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
        f" SELECT 'SP-' || {unit}, 'M-' || {unit}, '2026-10-01Z' FROM generate_series(1, %s) i",
        (units,),
    )
    conn.execute(
        f"""
        INSERT INTO readings (meter_id, ts, volume_m3, received_at)
        SELECT 'M-' || {unit}, ts, 100 + h * 0.01, ts + interval '5 minutes'
        FROM generate_series(1, %s) i, generate_series(0, %s) h,
             LATERAL (SELECT %s::timestamptz + h * interval '1 hour' AS ts) x
        """,
        (units, days * 24 - 1, START),
    )
    conn.execute("VACUUM ANALYZE")


def page(
    conn: psycopg.Connection[Any],
    end: datetime,
    since: datetime,
    after: tuple[datetime, str] | None,
    whole_period: bool = False,
) -> tuple[float, tuple[datetime, str] | None]:
    """One page's time and where the next starts (None: the last page); ``whole_period``: asked as
    before changes_page, every key left worked out and the first ``LIMIT`` kept (the baseline)."""
    started = time.perf_counter()
    if whole_period:
        rows = repository.account_reads(conn, "LL", START, end, after, LIMIT + 1, since)
        gone = repository.account_removed(conn, "LL", START, end, since, after, LIMIT + 1)
    else:
        rows, gone = repository.changes_page(conn, "LL", START, end, since, after, LIMIT + 1)
    keys = [(r["ts"], r["meter_id"]) for r in rows]
    gone_keys = [(r["ts"], r["meter_id"]) for r in gone]
    if gone:
        _, _, last = repository.first_keys(conn, keys, gone_keys, LIMIT)
    else:
        last = keys[min(LIMIT, len(keys)) - 1] if keys else None
    return time.perf_counter() - started, last if len(rows) + len(gone) > LIMIT else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--pages", type=int, default=12)
    args = parser.parse_args()
    end = START + timedelta(days=args.days)
    moved_out = START + timedelta(days=args.days // 3)
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            fill(conn, args.units, args.days)
            any_rows: psycopg.Connection[Any] = conn
            since = repository.changes_floor(any_rows)
            conn.execute("UPDATE service_agreements SET end_at = %s WHERE account_id = 'LL'", (moved_out,))
            conn.execute("ANALYZE")
            removed = args.units * (end - moved_out) // timedelta(hours=1)
            print(f"{args.units:,} units read hourly for {args.days} days; the move-out removes {removed:,} reads")
            firsts, medians = [], []
            for whole_period in (False, True):
                times: list[float] = []
                after: tuple[datetime, str] | None = None
                while len(times) < args.pages:
                    seconds, after = page(conn, end, since, after, whole_period)
                    times.append(seconds)
                    if after is None:
                        break
                rest = times[1:] or times
                firsts.append(times[0])
                medians.append(statistics.median(rest))
                print(
                    f"move-out pull{' (baseline: each page over the whole period)' if whole_period else ''}, "
                    f"first {len(times)} pages of {LIMIT}: first {times[0] * 1000:.0f} ms, "
                    f"then median {statistics.median(rest) * 1000:.0f} ms, worst {max(rest) * 1000:.0f} ms"
                )
            print(
                f"changes_page against the baseline: pages after the first {medians[1] / medians[0]:.1f}x faster "
                f"(median), the first page {firsts[1] / firsts[0]:.1f}x"
            )
            since = repository.changes_floor(any_rows)
            conn.execute(
                "UPDATE readings SET received_at = now() WHERE (meter_id, ts) IN"
                " (SELECT meter_id, ts FROM readings WHERE ts < %s ORDER BY meter_id, ts LIMIT 20)",
                (moved_out,),
            )
            best = min(page(conn, end, since, None)[0] for _ in range(3))
            print(f"an ordinary pull, 20 reads rewritten since: one page, {best * 1000:.0f} ms (best of 3)")
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
