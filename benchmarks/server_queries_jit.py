"""Which of the server's request queries PostgreSQL compiles with JIT, and what that costs a request.

PostgreSQL compiles a query's expressions with LLVM (JIT) when its plan's estimated cost passes
``jit_above_cost`` (100,000 by default). The compile time is paid on every execution and does not
shrink with the rows the query reads: a page that reads one meter's month from a big fleet can be
estimated (wrongly, or rightly as an upper bound) above the threshold and spend tens of milliseconds
compiling what runs in two.

This builds a fleet in a fresh migrated database (``--meters`` customer meters, each with an account,
a service point, an agreement and an installation; ``--days`` of hourly reads up to 1 November 2026
and their stored daily consumption; an open burst on every 50th meter, ten enquiries a meter), asks
the server's pages and API endpoints for it through the real app (FastAPI's TestClient, one key
holding every role), and records each query the requests run. Each recorded read-only query is then
run again on a plain connection in UTC (not the server's pool, whose connections have JIT off), with
JIT as the database is configured and with ``SET jit = off``, in the same run: its median time of
``--repeat`` runs each way (wall clock, every row fetched), and from ``EXPLAIN (ANALYZE, FORMAT
JSON)`` its plan's cost, whether it was JIT-compiled (functions) and that compile's time. A query the
server streams on a server-side cursor (the NEM12 download) is run so, once each way, and its plan
is the cursor's (``EXPLAIN DECLARE``: the functions it compiles, not their time). Printed: one line
per query (the request that ran it, cost, JIT ms, functions, median ms with JIT as configured and
off, the ratio), then each request's sum. Needs TimescaleDB, started as the test fixtures start it
(tests/services.py; ``AQUAMI_TEST_DATABASE_URL`` points at another).

    python -m benchmarks.server_queries_jit [--meters 3000] [--days 30] [--repeat 5] [--jit-above-cost N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg import sql

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from collector.migrate import migrate
from server.app import create_app
from server.auth import ROLES, create_api_key
from tests.services import admin_url, create_database, drop_database

#: The reads end here: the last whole month's determinants and NEM12 file are asked for.
END = datetime(2026, 11, 1, tzinfo=UTC)


def fill(conn: psycopg.Connection[Any], meters: int, days: int) -> None:
    """``meters`` customer meters M-00001 … in 30 districts, each fitted at its own service point
    held by its own account (ACC-00001 …) since 2020, before the reads; hourly reads for ``days`` days up to
    ``END`` and their daily consumption (refresh_consumption); an open burst on every 50th meter; ten
    enquiries a meter over the months before."""
    start = END - timedelta(days=days)
    unit = "lpad(i::text, 5, '0')"
    conn.execute(
        f"INSERT INTO meters (meter_id, registered, dma, role, has_readings)"
        f" SELECT 'M-' || {unit}, true, 'D' || i %% 30, 'customer', true FROM generate_series(1, %s) i",
        (meters,),
    )
    conn.execute(
        f"INSERT INTO accounts (account_id, name) SELECT 'ACC-' || {unit}, 'N' FROM generate_series(1, %s) i", (meters,)
    )
    conn.execute(
        f"INSERT INTO service_points (service_point_id) SELECT 'SP-' || {unit} FROM generate_series(1, %s) i", (meters,)
    )
    conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        f" SELECT 'ACC-' || {unit}, 'SP-' || {unit}, '2020-01-01Z' FROM generate_series(1, %s) i",
        (meters,),
    )
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
        f" SELECT 'SP-' || {unit}, 'M-' || {unit}, '2020-01-01Z' FROM generate_series(1, %s) i",
        (meters,),
    )
    conn.execute(
        f"""
        INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h, received_at)
        SELECT 'M-' || {unit}, ts, 100 + h * (0.005 + (i %% 7) * 0.002), 0.01, ts + interval '5 minutes'
        FROM generate_series(1, %s) i, generate_series(0, %s) h,
             LATERAL (SELECT %s::timestamptz + h * interval '1 hour' AS ts) x
        """,
        (meters, days * 24, start),
    )
    conn.execute("SELECT refresh_consumption(%s, %s)", (start, END + timedelta(days=1)))
    end = END
    bursts = [
        new_alert(
            AlertKind.BURST,
            f"M-{i:05d}",
            f"D{i % 30}",
            start=end - timedelta(hours=3),
            detected_at=end,
            last_seen=end,
            ended_at=None,
            rate_l_h=150.0,
            volume_l=450.0,
            confidence=0.8,
            evidence=((end - timedelta(hours=3), end),),
        ).replace(updated_at=end)
        for i in range(1, meters + 1, 50)
    ]
    save_changes(conn, AlertChanges(opened=bursts))
    conn.execute("SELECT setseed(0.17)")
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, meter_id, opened_at, updated_at,
                               closed_at)
        SELECT 'enquiry', 'meter fault', 'staff', status, 'normal', 'subject',
               'M-' || lpad((1 + i %% %s)::text, 5, '0'), opened, opened, CASE WHEN status = 'closed' THEN opened END
        FROM (SELECT i, %s::timestamptz - random() * interval '300 days' AS opened,
                     CASE WHEN random() < 0.7 THEN 'closed' ELSE 'open' END AS status
              FROM generate_series(1, %s) i) e
        """,
        (meters, start, meters * 10),
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")


def requests_to_survey(meters: int, days: int) -> list[str]:
    """The pages and endpoints asked, each as a user asks it, about a meter and an account mid-fleet."""
    meter, account = f"M-{meters // 2:05d}", f"ACC-{meters // 2:05d}"
    month = f"{END - timedelta(days=1):%Y-%m}"
    start, end = (END - timedelta(days=min(days, 30))).isoformat(), END.isoformat()
    reads = f"from={start}&to={end}".replace("+", "%2B")
    return [
        "/",
        f"/care/meters?meter_id={meter[:-1]}",
        f"/care/meters/{meter}",
        "/care/enquiries",
        f"/care/enquiries?meter_id={meter}",
        "/meters",
        f"/meters/{meter}",
        f"/meters/{meter}/readings",
        "/alerts",
        "/gateways",
        "/enquiries",
        f"/billing/reads?account={account}&{reads}",
        f"/billing/determinants?period={month}&account={account}",
        f"/billing/determinants?period={month}&limit=500",
        f"/billing/nem12?period={month}&account={account}",
        f"/billing/nem12?period={month}",  # the whole fleet's month: a bulk download, streamed
        "/open311/v2/requests.json",
    ]


@dataclass
class Recorded:
    request: str
    query: str
    params: Any
    streamed: bool  # run on a server-side cursor (a download streamed as it is read), planned as one


@contextmanager
def recording(into: list[Recorded], request: list[str]) -> Iterator[None]:
    """Every query any cursor runs inside the block, noted under the request being asked (``request[0]``)."""
    originals = {kind: kind.execute for kind in (psycopg.Cursor, psycopg.ServerCursor)}

    def noting(kind: type[Any]) -> Any:
        execute = originals[kind]

        def note(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else query.as_string(self.connection)
            into.append(Recorded(request[0], text, params, isinstance(self, psycopg.ServerCursor)))
            return execute(self, query, params, **kwargs)

        return note

    for kind in originals:  # a server-side cursor (a streamed download) has its own execute
        setattr(kind, "execute", noting(kind))  # noqa: B010 (mypy: a method is not assignable)
    try:
        yield
    finally:
        for kind, execute in originals.items():
            setattr(kind, "execute", execute)  # noqa: B010


def ask(url: str, paths: list[str]) -> list[Recorded]:
    """The queries the app ran answering each of ``paths`` (each asked once first, unrecorded, so the
    pool is warm and start-up's own queries are left out)."""
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "jit-survey", list(ROLES))
    headers = {"Authorization": f"Bearer {key}"}
    recorded: list[Recorded] = []
    asking = [""]
    with TestClient(create_app(url)) as client:
        for path in paths:
            client.get(path, headers=headers)
        with recording(recorded, asking):
            for path in paths:
                asking[0] = path
                response = client.get(path, headers=headers)
                if response.status_code != 200:
                    print(f"  ({path}: {response.status_code} {response.text[:200]})")
    return recorded


def read_only(query: str) -> bool:
    """A query to run again: a SELECT (or WITH … SELECT) writing nothing, not the pool's empty check."""
    text = query.strip().lower()
    writes = any(word in text for word in ("insert ", "update ", "delete ", "for update", "set_config"))
    return text.startswith(("select", "with")) and not writes


@dataclass
class Timed:
    cost: float  # the plan's estimated total cost (a streamed query's as its cursor plans it)
    jit_ms: float | None  # the plan's JIT total (generation, inlining, optimization, emission); 0: not
    # compiled; None: a streamed query, whose cursor EXPLAIN does not run
    jit_functions: int
    on_ms: float  # median wall clock of the query run as the database is configured
    off_ms: float  # … with SET jit = off


def _explained(conn: psycopg.Connection[Any], query: str, params: Any) -> dict[str, Any]:
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return plan[0]


def _cursor_plan(conn: psycopg.Connection[Any], r: Recorded) -> dict[str, Any]:
    """A streamed query's plan as its server-side cursor is planned (for its first rows), not run:
    EXPLAIN DECLARE, which shows whether the plan will be JIT-compiled (its functions), not the time."""
    with conn.transaction():
        row = conn.execute("EXPLAIN (FORMAT JSON) DECLARE survey_plan CURSOR FOR " + r.query, r.params).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return plan[0]


def _run(conn: psycopg.Connection[Any], r: Recorded) -> None:
    """``r`` run and read to its end as the server ran it: a streamed query on a server-side cursor
    (planned for its first rows: cursor_tuple_fraction), in a transaction."""
    if not r.streamed:
        conn.execute(r.query, r.params).fetchall()
        return
    with conn.transaction(), conn.cursor(name="survey") as cur:
        cur.execute(r.query, r.params)
        while cur.fetchmany(10_000):
            pass


def _median_ms(conn: psycopg.Connection[Any], r: Recorded, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        _run(conn, r)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def timed(conn: psycopg.Connection[Any], r: Recorded, repeat: int) -> Timed:
    """The query with JIT as configured, then with it off, on one connection. Each way it is run once
    first (explained, for a plain one: which also gives its plan), then ``repeat`` times."""
    conn.execute("RESET jit")
    if r.streamed:
        plan = _cursor_plan(conn, r)
        jit_ms = None
        _run(conn, r)
    else:
        plan = _explained(conn, r.query, r.params)
        jit_ms = float(plan.get("JIT", {}).get("Timing", {}).get("Total", 0.0))
    on = _median_ms(conn, r, repeat)
    conn.execute("SET jit = off")
    if r.streamed:
        _run(conn, r)
    else:
        _explained(conn, r.query, r.params)
    off = _median_ms(conn, r, repeat)
    conn.execute("RESET jit")
    return Timed(
        cost=float(plan["Plan"]["Total Cost"]),
        jit_ms=jit_ms,
        jit_functions=int(plan.get("JIT", {}).get("Functions", 0)),
        on_ms=on,
        off_ms=off,
    )


def first_words(query: str, width: int = 60) -> str:
    return " ".join(query.split())[:width]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--jit-above-cost",
        type=float,
        help="the survey database's jit_above_cost (the server's default otherwise): lower, it stands for a "
        "larger fleet, whose plans pass the threshold, to see what JIT does to them",
    )
    args = parser.parse_args()

    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            fill(conn, args.meters, args.days)
            if args.jit_above_cost is not None:  # for the sessions opened after this one
                (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET jit_above_cost = {}").format(
                        sql.Identifier(name), sql.Literal(args.jit_above_cost)
                    )
                )
            (readings,) = conn.execute("SELECT count(*) FROM readings").fetchone() or (0,)
        with psycopg.connect(url) as conn:  # a new session: the database's settings as the survey's
            (jit_above_cost,) = conn.execute("SHOW jit_above_cost").fetchone() or ("?",)
            (jit,) = conn.execute("SHOW jit").fetchone() or ("?",)
        print(
            f"{args.meters} meters, {readings:,} hourly readings over {args.days} days, built in "
            f"{time.perf_counter() - started:.0f} s; the database's jit = {jit}, jit_above_cost = {jit_above_cost}",
            flush=True,
        )
        recorded = ask(url, requests_to_survey(args.meters, args.days))
        by_request: dict[str, list[Timed]] = {}
        print(f"{'request / query':80} {'cost':>10} {'JIT ms':>7} {'fns':>4} {'on ms':>8} {'off ms':>8} {'ratio':>6}")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")  # as the server's pool sets each connection
            for r in recorded:
                if not read_only(r.query):
                    continue
                t = timed(conn, r, 1 if r.streamed else args.repeat)
                by_request.setdefault(r.request, []).append(t)
                ratio = t.on_ms / t.off_ms if t.off_ms > 0 else float("nan")
                compile_ms = "cursor" if t.jit_ms is None else f"{t.jit_ms:.1f}"
                plan = f"{t.cost:>10,.0f} {compile_ms:>7} {t.jit_functions:>4}"
                print(
                    f"  {r.request[:44]:44} {first_words(r.query, 34):34} {plan} "
                    f"{t.on_ms:>8.2f} {t.off_ms:>8.2f} {ratio:>5.1f}x {'JIT' if t.jit_functions else ''}",
                    flush=True,
                )
        print("\nper request (its read-only queries summed):")
        compiled = 0
        for request, times in by_request.items():
            on, off = sum(t.on_ms for t in times), sum(t.off_ms for t in times)
            functions = sum(t.jit_functions for t in times)
            compiled += functions > 0
            print(
                f"  {request[:60]:60} {len(times):>3} queries, {functions:>5} functions JIT-compiled: "
                f"{on:9.2f} ms with JIT as configured, {off:9.2f} ms with jit = off: {on / off:5.1f}x"
            )
        total_on = sum(t.on_ms for times in by_request.values() for t in times)
        total_off = sum(t.off_ms for times in by_request.values() for t in times)
        print(
            f"\n{compiled} of {len(by_request)} requests JIT-compiled; all requests' queries: {total_on:.1f} ms "
            f"with JIT as configured against {total_off:.1f} ms with jit = off: {total_on / total_off:.1f}x"
        )
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
