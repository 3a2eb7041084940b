"""The meter page's days (server.meters.repository.daily_consumption: the chart and the days' table) for
a meter with a long hourly history, against the same page in a database holding a month: how much of
the page's time grows with the readings' history (TimescaleDB's chunks, 7 days each, that its queries
plan). Two fresh databases, each with ``--meters`` meters read hourly (one ``--days`` up to 1 November
2026, the other 30) and their daily consumption; the page's 30 days asked of a meter of each, in turn,
``--repeat`` times; printed: each one's median and their ratio (1: the history costs the page nothing).

    python -m benchmarks.bench_meter_page_days [--meters 3] [--days 1095] [--repeat 21]
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
from server.meters.repository import daily_consumption
from tests.services import admin_url, create_database, drop_database

END = datetime(2026, 11, 1, tzinfo=UTC)
SHOWN_DAYS = 30
MONTH = 30


def fill(conn: psycopg.Connection[Any], meters: int, days: int, end: datetime = END) -> None:
    """``meters`` customer meters M-1 … fitted since 2020, read hourly for ``days`` days up to ``end``
    (one read in fifty estimated, for the days' badges), and their daily consumption."""
    conn.execute(
        "INSERT INTO meters (meter_id, registered, dma, role, has_readings)"
        " SELECT 'M-' || i, true, 'D1', 'customer', true FROM generate_series(1, %s) i;",
        (meters,),
    )
    conn.execute(
        "INSERT INTO service_points (service_point_id) SELECT 'SP-' || i FROM generate_series(1, %s) i", (meters,)
    )
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
        " SELECT 'SP-' || i, 'M-' || i, '2020-01-01Z' FROM generate_series(1, %s) i",
        (meters,),
    )
    conn.execute(
        """
        INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h, received_at, quality, quality_by, quality_reason)
        SELECT 'M-' || i, ts, 100 + h * 0.007, 0.01, ts + interval '5 minutes',
               CASE WHEN h %% 50 = 0 THEN 'estimated' ELSE 'actual' END,
               CASE WHEN h %% 50 = 0 THEN 'vee' END, CASE WHEN h %% 50 = 0 THEN 'gap' END
        FROM generate_series(1, %s) i, generate_series(0, %s) h,
             LATERAL (SELECT %s::timestamptz + h * interval '1 hour' AS ts) x
        """,
        (meters, days * 24, end - timedelta(days=days)),
    )
    conn.execute("SELECT refresh_consumption(%s, %s)", (end - timedelta(days=days + 1), end + timedelta(days=1)))
    conn.execute("VACUUM ANALYZE")


def page_ms(conn: psycopg.Connection[Any], meter_id: str) -> float:
    """One asking of the page's days, in milliseconds (wall clock, every row fetched)."""
    started = time.perf_counter()
    rows = daily_consumption(conn, meter_id, SHOWN_DAYS)
    elapsed = (time.perf_counter() - started) * 1000
    assert len(rows) == SHOWN_DAYS, f"{meter_id}: {len(rows)} days shown"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=3)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    server = admin_url()
    urls = [create_database(server), create_database(server)]
    try:
        conns = []
        for url, days in zip(urls, (args.days, MONTH), strict=True):
            migrate(url)
            conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
            fill(conn, args.meters, days)
            conn.execute("SET jit = off")  # as the server's pool has it
            conns.append(conn)
        meter = f"M-{(args.meters + 1) // 2}"
        long_ms: list[float] = []
        month_ms: list[float] = []
        for _ in range(args.repeat):  # in turn, so that the machine's load falls on both alike
            long_ms.append(page_ms(conns[0], meter))
            month_ms.append(page_ms(conns[1], meter))
        for conn in conns:
            conn.close()
        long_median, month_median = statistics.median(long_ms), statistics.median(month_ms)
        print(
            f"{args.meters} meters read hourly; the meter page's {SHOWN_DAYS} days of {meter}, {args.repeat} times each"
        )
        print(
            f"meter page's days with {args.days} days of history: median {long_median:.2f} ms against "
            f"{month_median:.2f} ms with {MONTH}: {long_median / month_median:.2f}x"
        )
    finally:
        for url in urls:
            drop_database(server, url)


if __name__ == "__main__":
    main()
