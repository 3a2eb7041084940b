"""The NEM12 export of a whole fleet's month, beside two baselines measured in the same run.

``--meters`` meters, each at its own service point under its own account, read hourly for ``--days``
days in a real TimescaleDB (``consumption_hourly`` refreshed, as the collector keeps it). Times the
export (server.billing.nem12: ``prepare`` and every chunk of ``nem12_chunks``, as
``GET /billing/nem12`` streams it), then, over the same hours:

- a raw binary ``COPY`` of the ``consumption_hourly`` rows the file is built from (the floor: the
  rows out of the database and nothing more);
- a naive export: one query a meter for its hours, its 200 record and each day's 300 record
  formatted in Python, every hour ``A`` (what an export that knew nothing of installations,
  tenants, job cards, gaps or qualities would do).

Prints each time (best of ``--repeat``) and the export's ratio to each.

    python -m benchmarks.bench_nem12                       # 2,000 meters, 30 days
    python -m benchmarks.bench_nem12 --meters 200 --days 7
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from collector.migrate import migrate
from server.billing.nem12 import nem12_chunks, prepare
from tests.services import admin_url, create_database, drop_database

START = datetime(2026, 11, 1, tzinfo=UTC)


def fill(conn: psycopg.Connection[Any], meters: int, days: int) -> int:
    """The fleet, its agreements and installations from before the period, its hourly reads (and the
    read at the period's start, which opens its first hour); returns the reads written."""
    unit = "lpad(i::text, 6, '0')"
    for statement in (
        f"INSERT INTO meters (meter_id, registered) SELECT 'M-' || {unit}, true FROM generate_series(1, %(n)s) i",
        f"INSERT INTO service_points (service_point_id) SELECT 'SP-' || {unit} FROM generate_series(1, %(n)s) i",
        f"INSERT INTO accounts (account_id, name) SELECT 'A-' || {unit}, 'tenant' FROM generate_series(1, %(n)s) i",
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        f" SELECT 'A-' || {unit}, 'SP-' || {unit}, '2025-01-01Z' FROM generate_series(1, %(n)s) i",
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
        f" SELECT 'SP-' || {unit}, 'M-' || {unit}, '2026-01-01Z' FROM generate_series(1, %(n)s) i",
    ):
        conn.execute(statement, {"n": meters})
    # each meter's own use: 5-25 L an hour, more by day, varying hour to hour (deterministic)
    conn.execute(
        f"""
        INSERT INTO readings (meter_id, ts, volume_m3, received_at)
        SELECT 'M-' || {unit}, %(start)s::timestamptz + h * interval '1 hour',
               round(100 + i * 0.5 + sum(0.005 + 0.02 * ((i * 7 + h * 13) %% 17) / 17.0
                                         * CASE WHEN h %% 24 BETWEEN 6 AND 22 THEN 1 ELSE 0.3 END)
                                     OVER (PARTITION BY i ORDER BY h), 3),
               %(start)s::timestamptz + h * interval '1 hour' + interval '5 minutes'
        FROM generate_series(1, %(n)s) i, generate_series(0, %(hours)s) h
        """,
        {"n": meters, "hours": days * 24, "start": START},
    )
    end = START + timedelta(days=days)
    conn.execute("SELECT refresh_consumption(%s, %s)", (START, end + timedelta(hours=1)))
    conn.execute("VACUUM ANALYZE")
    return meters * (days * 24 + 1)


def export(conn: psycopg.Connection[Any], end: datetime) -> tuple[float, int]:
    """aquami's export, streamed and counted: its time and size in characters."""
    started = time.perf_counter()
    prepared = prepare(conn, START, end, now=end)
    size = sum(len(chunk) for chunk in nem12_chunks(conn, prepared))
    return time.perf_counter() - started, size


def raw_copy(conn: psycopg.Connection[Any], end: datetime) -> tuple[float, int]:
    """The floor: the same hourly rows copied out raw (binary), nothing made of them."""
    started = time.perf_counter()
    rows = 0
    with conn.cursor().copy(
        "COPY (SELECT meter_id, hour, consumption_m3 FROM consumption_hourly"
        " WHERE hour >= %s AND hour < %s ORDER BY meter_id, hour) TO STDOUT (FORMAT BINARY)",
        (START, end),
    ) as copy:
        copy.set_types(["text", "timestamptz", "numeric"])
        for _ in copy.rows():
            rows += 1
    return time.perf_counter() - started, rows


def naive(conn: psycopg.Connection[Any], end: datetime) -> tuple[float, int]:
    """A naive export: each meter's hours by its own query, every hour ``A``, formatted in Python."""
    started = time.perf_counter()
    size = sum(len(line) for line in naive_lines(conn, end))
    return time.perf_counter() - started, size


def naive_lines(conn: psycopg.Connection[Any], end: datetime) -> list[str]:
    """The naive export's lines (UpdateDateTime: the export's time)."""
    days = (end - START) // timedelta(days=1)
    out = [f"100,NEM12,{end:%Y%m%d%H%M},AQUAMI,BILLING\r\n"]
    with conn.cursor(row_factory=tuple_row) as cur:
        installed = cur.execute(
            "SELECT service_point_id, meter_id FROM meter_installations"
            " WHERE installed_at < %s AND (removed_at IS NULL OR removed_at > %s) ORDER BY 1, 2",
            (end, START),
        ).fetchall()
        for service_point, meter in installed:
            hours: dict[datetime, Decimal] = dict(
                cur.execute(
                    "SELECT hour, consumption_m3 FROM consumption_hourly"
                    " WHERE meter_id = %s AND hour >= %s AND hour < %s",
                    (meter, START, end),
                ).fetchall()
            )
            out.append(f"200,{service_point},E1,1,E1,N1,{meter},KL,60,\r\n")
            for d in range(days):
                day = START + timedelta(days=d)
                values = ",".join(_value(hours.get(day + timedelta(hours=h), Decimal(0))) for h in range(24))
                out.append(f"300,{day:%Y%m%d},{values},A,,,{end:%Y%m%d%H%M%S},\r\n")
    out.append("900\r\n")
    return out


def same_file(conn: psycopg.Connection[Any], end: datetime) -> bool:
    """Whether the naive export writes this fleet's file as aquami does, but for each day's UpdateDateTime
    (aquami's: when the day's newest read arrived): the baseline makes the same file, not less of one."""
    ours = "".join(nem12_chunks(conn, prepare(conn, START, end, now=end))).split("\r\n")
    theirs = "".join(naive_lines(conn, end)).split("\r\n")
    return [_without_stamp(line) for line in ours] == [_without_stamp(line) for line in theirs]


def _without_stamp(line: str) -> str:
    fields = line.split(",")
    return ",".join(fields[:-2] if fields[0] == "300" else fields)


def _value(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    args = parser.parse_args()
    end = START + timedelta(days=args.days)
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            filled = time.perf_counter()
            reads = fill(conn, args.meters, args.days)
            print(
                f"{args.meters:,} meters read hourly for {args.days} days: {reads:,} reads,"
                f" filled and consumption refreshed in {time.perf_counter() - filled:.1f} s"
            )
            if not same_file(conn, end):
                raise SystemExit("the naive export's file differs from aquami's: no baseline to compare with")
            print("the naive export writes the same file as aquami's (but for each day's UpdateDateTime)")
            ways = {"NEM12 export": export, "raw binary COPY of its hourly rows": raw_copy, "naive export": naive}
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                for name, way in ways.items():
                    seconds, size = way(conn, end)
                    if seconds < best.get(name, float("inf")):
                        best[name] = seconds
                    sizes = f"{size:,} rows" if way is raw_copy else f"{size:,} characters"
                    print(f"  {name}: {seconds:.2f} s ({sizes})", flush=True)
            for name, seconds in best.items():
                print(f"{name}: {seconds:.2f} s (best of {args.repeat})")
            print(
                f"NEM12 export against the baselines: {best['NEM12 export'] / best['naive export']:.2f}x the naive"
                f" export's time, {best['NEM12 export'] / best['raw binary COPY of its hourly rows']:.1f}x the raw"
                " COPY's"
            )
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
