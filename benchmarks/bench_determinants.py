"""A month's billing determinants for a fleet of accounts, beside the query as it was, in the same run.

``--accounts`` accounts in a fresh migrated database (TimescaleDB, as the tests start it), each with
its meter read hourly from a day before the month to two hours after it, and varied as a fleet is
(:func:`fill`): accounts with two meters, meters exchanged mid-month (job cards at each end), a
tenant moving out and another in, reads missing for days, estimated reads (with more places than a
register's), a register stepping back (unknown consumption), a rollover VEE explained, a bad read
that arrived late, water over the meter's maximum flow, a meter silent before the month ends, a meter
fitted mid-month between two reads without a job card, bursts, and accounts with no meter.

Times ``server.billing.repository.determinant_lines`` for the month (every account, as one page of
``GET /billing/determinants`` asks), and the whole request (``GET /billing/determinants?period=…``
through the real app, FastAPI's TestClient), each the median of ``--repeat`` runs interleaved with
the baseline's: the same query with the line's ``as_of`` and its consumption split read from the
meter's reads in two scans, as it was before they shared one (:func:`baseline_lines`). Both answers
are compared byte for byte; the ratios are printed.

    python -m benchmarks.bench_determinants                     # 500 accounts, October 2026
    python -m benchmarks.bench_determinants --accounts 100 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from collector.migrate import migrate
from server.app import create_app
from server.auth import create_api_key
from server.billing import repository
from tests.services import admin_url, create_database, drop_database

#: The month billed, in UTC (the utility's zone until one is set).
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD = "2026-10"
#: Where the exchanged meters are swapped and the moving tenants move.
EXCHANGE = datetime(2026, 10, 15, 6, 30, tzinfo=UTC)
MOVE = datetime(2026, 10, 12, 12, tzinfo=UTC)
#: Where the second meters of every 20th account are fitted, between two reads.
FITTED = datetime(2026, 10, 12, 12, 20, tzinfo=UTC)


def fill(conn: psycopg.Connection[Any], accounts: int) -> int:
    """The fleet (see the module's docstring); returns the reads written. Account ``A-i`` (``i`` from 1)
    holds service point ``SP-i`` since 2020; which of the variations it has follows from ``i``."""
    n = {"n": accounts, "start": START - timedelta(days=1), "hours": (END - START).days * 24 + 24 + 2}
    unit = "lpad(i::text, 5, '0')"
    every = "generate_series(1, %(n)s) i"
    for statement in (
        f"INSERT INTO accounts (account_id, name) SELECT 'A-' || {unit}, 'tenant' FROM {every}",
        f"INSERT INTO service_points (service_point_id) SELECT 'SP-' || {unit} FROM {every}",
        # every 10th account also holds a second service point, with its own meter
        f"INSERT INTO service_points (service_point_id) SELECT 'SQ-' || {unit} FROM {every} WHERE i %% 10 = 0",
        "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at)"
        f" SELECT 'A-' || {unit}, 'SP-' || {unit}, '2020-01-01Z', CASE WHEN i %% 19 = 0 THEN %(move)s END FROM {every}",
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        f" SELECT 'A-' || {unit}, 'SQ-' || {unit}, '2020-01-01Z' FROM {every} WHERE i %% 10 = 0",
        # every 19th: its tenant moves out mid-month and a new account moves in
        f"INSERT INTO accounts (account_id, name) SELECT 'B-' || {unit}, 'new tenant' FROM {every} WHERE i %% 19 = 0",
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        f" SELECT 'B-' || {unit}, 'SP-' || {unit}, %(move)s FROM {every} WHERE i %% 19 = 0",
        # the meters: none at every 17th service point (an account with no meter)
        f"INSERT INTO meters (meter_id, registered) SELECT 'M-' || {unit}, true FROM {every} WHERE i %% 17 <> 0",
        f"INSERT INTO meters (meter_id, registered) SELECT 'Q-' || {unit}, true FROM {every} WHERE i %% 10 = 0",
        f"INSERT INTO meters (meter_id, registered) SELECT 'N-' || {unit}, true FROM {every} WHERE i %% 7 = 0",
        # every 7th meter is exchanged mid-month, job cards at both ends
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at, final_register_m3)"
        f" SELECT 'SP-' || {unit}, 'M-' || {unit}, '2020-01-01Z', CASE WHEN i %% 7 = 0 THEN %(exchange)s END,"
        f"        CASE WHEN i %% 7 = 0 THEN 100 + 15 * 24 * (0.005 + (i %% 7) * 0.002) + 6.5 * 0.005 END"
        f" FROM {every} WHERE i %% 17 <> 0",
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, initial_register_m3)"
        f" SELECT 'SP-' || {unit}, 'N-' || {unit}, %(exchange)s, 0.250 FROM {every} WHERE i %% 7 = 0 AND i %% 17 <> 0",
        # every 20th's second meter is fitted mid-month, with no job card, read before elsewhere
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
        f" SELECT 'SQ-' || {unit}, 'Q-' || {unit}, CASE WHEN i %% 20 = 0 THEN %(fitted)s ELSE '2020-01-01Z' END"
        f" FROM {every} WHERE i %% 10 = 0",
    ):
        conn.execute(statement, {**n, "move": MOVE, "exchange": EXCHANGE, "fitted": FITTED})
    # each meter's register, hourly: 5-17 L an hour, its own rate
    conn.execute(
        """
        INSERT INTO readings (meter_id, ts, volume_m3, received_at)
        SELECT m.meter_id, %(start)s::timestamptz + h * interval '1 hour',
               100 + h * (0.005 + (right(m.meter_id, 5)::int %% 7) * 0.002),
               %(start)s::timestamptz + h * interval '1 hour' + interval '5 minutes'
        FROM meters m, generate_series(0, %(hours)s) h
        WHERE m.meter_id NOT LIKE 'N-%%'
        """,
        n,
    )
    conn.execute(
        """
        DELETE FROM readings r USING meter_installations mi
        WHERE mi.meter_id = r.meter_id AND mi.removed_at IS NOT NULL AND r.ts > mi.removed_at
        """
    )
    conn.execute(  # the exchanged meters' new ones, from their next hour
        """
        INSERT INTO readings (meter_id, ts, volume_m3, received_at)
        SELECT mi.meter_id, date_trunc('hour', mi.installed_at) + h * interval '1 hour', 0.250 + h * 0.011,
               date_trunc('hour', mi.installed_at) + h * interval '1 hour' + interval '5 minutes'
        FROM meter_installations mi, generate_series(1, %(hours)s) h
        WHERE mi.meter_id LIKE 'N-%%' AND date_trunc('hour', mi.installed_at) + h * interval '1 hour' <= %(end)s
        """,
        {**n, "end": END + timedelta(hours=2)},
    )
    m = "right(meter_id, 5)::int"
    for statement in (
        # every 13th: three days without reads
        f"DELETE FROM readings WHERE meter_id LIKE 'M-%' AND {m} % 13 = 0"
        " AND ts > '2026-10-10Z' AND ts < '2026-10-13Z'",
        # every 37th: silent from the 25th (no read at or after the month's end)
        f"DELETE FROM readings WHERE meter_id LIKE 'M-%' AND {m} % 37 = 0 AND ts > '2026-10-25Z'",
        # every 11th: half a day estimated by VEE, with more places than a register has
        "UPDATE readings SET quality = 'estimated', quality_by = 'vee:linear', quality_reason = 'gap',"
        " volume_m3 = volume_m3 + 0.000123"
        f" WHERE meter_id LIKE 'M-%' AND {m} % 11 = 0 AND ts > '2026-10-20Z' AND ts < '2026-10-20T12:00Z'",
        # every 23rd: a register a litre back, once (its interval unknown)
        f"UPDATE readings SET volume_m3 = volume_m3 - 1 WHERE meter_id LIKE 'M-%' AND {m} % 23 = 0"
        " AND ts = '2026-10-05T03:00Z'",
        # every 29th: a rollover VEE explained
        f"UPDATE readings SET volume_m3 = volume_m3 - 100 WHERE meter_id LIKE 'M-%' AND {m} % 29 = 0"
        " AND ts >= '2026-10-08T00:00Z'",
        "INSERT INTO register_discontinuities (meter_id, ts, kind, consumption_m3)"
        f" SELECT meter_id, ts, 'rollover', 0.0070 FROM readings WHERE meter_id LIKE 'M-%' AND {m} % 29 = 0"
        " AND ts = '2026-10-08T00:00Z'",
        # the exchanged meters' first reads: bad reads (VEE), which arrived late
        "INSERT INTO register_discontinuities (meter_id, ts, kind)"
        " SELECT meter_id, min(ts), 'bad_read' FROM readings WHERE meter_id LIKE 'N-%' GROUP BY meter_id",
        "UPDATE readings r SET received_at = '2026-11-03Z' FROM register_discontinuities b"
        " WHERE b.meter_id = r.meter_id AND b.ts = r.ts AND b.kind = 'bad_read'",
        # every 31st: water over the meter's maximum flow, flagged by VEE
        "INSERT INTO vee_flags (meter_id, ts, rule) SELECT meter_id, ts, 'over_max_flow' FROM readings"
        f" WHERE meter_id LIKE 'M-%' AND {m} % 31 = 0 AND ts = '2026-10-17T09:00Z'",
    ):
        conn.execute(statement)
    # the agreements and job cards recorded as they happened, not as this fills them in: recorded
    # now, after every read arrived, each line's as_of would be when it was recorded
    conn.execute(
        "UPDATE account_membership_changes SET recorded_at = greatest(from_ts, '2020-01-01Z') + interval '1 hour'"
    )
    bursts = [
        new_alert(
            AlertKind.BURST if i % 100 else AlertKind.LEAK,
            f"M-{i:05d}",
            "D1",
            start=datetime(2026, 10, 9, 22, tzinfo=UTC),
            detected_at=datetime(2026, 10, 10, tzinfo=UTC),
            last_seen=datetime(2026, 10, 10, 3, tzinfo=UTC),
            ended_at=None,
            rate_l_h=150.0 + i / 7,
            volume_l=450.0,
            confidence=0.8,
            evidence=((datetime(2026, 10, 9, 22, tzinfo=UTC), datetime(2026, 10, 10, tzinfo=UTC)),),
        ).replace(updated_at=datetime(2026, 10, 10, 3, tzinfo=UTC))
        for i in range(1, accounts + 1, 50)
        if i % 17
    ]
    save_changes(conn, AlertChanges(opened=bursts))
    reads = conn.execute("SELECT count(*) FROM readings").fetchone()
    conn.commit()
    assert reads is not None
    return int(reads[0])


#: The line's consumption split as it was read, in a scan of its own (:data:`repository._SPLIT` now
#: also gives the line's as_of, from the same scan).
_SPLIT_APART = """
SELECT bool_and(d.c IS NOT NULL) IS NOT FALSE AS known,
       sum(d.c) FILTER (WHERE d.estimated) AS estimated, sum(d.c) FILTER (WHERE NOT d.estimated) AS not_estimated
FROM (
    SELECT interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c,
           lag(r.ts) OVER w AS prev_ts,
           r.quality = 'estimated' OR lag(r.quality) OVER w = 'estimated' AS estimated
    FROM readings r
    LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
    WHERE r.meter_id = spans.meter_id AND r.ts >= spans.first_ts AND r.ts <= spans.last_ts
    WINDOW w AS (ORDER BY r.ts)
) d
WHERE d.prev_ts IS NOT NULL
"""

#: The newest arrival among the reads the line rests on, as it was read: a second scan of them.
_AS_OF_APART = """(SELECT max(r.received_at) FROM readings r
                    WHERE r.meter_id = spans.meter_id AND r.ts >= coalesce(opening_ts, w_from)
                      AND r.ts <= greatest(coalesce(after_end_ts, w_to), closing_ts)),"""
_AS_OF_SHARED = "split.newest_received_at,  -- (_SPLIT)"


#: The query as it is now, whatever a caller puts in ``repository.determinant_lines`` (as main does, to
#: time the request both ways).
_ONE_SCAN = repository.determinant_lines


class _Rewriting:
    """A connection whose ``execute`` runs the query with the baseline's two scans in place of one."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, query: str, params: dict[str, Any]) -> psycopg.Cursor[Any]:
        for now, was in ((repository._SPLIT, _SPLIT_APART), (_AS_OF_SHARED, _AS_OF_APART)):
            if query.count(now) != 1:
                raise AssertionError(f"determinant_lines no longer holds {now.strip()[:40]!r} once: mend the baseline")
            query = query.replace(now, was)
        return self.conn.execute(query, params)


def baseline_lines(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    account_id: str | None,
    after_account: str | None,
    accounts_limit: int | None,
) -> list[dict[str, Any]]:
    """:func:`repository.determinant_lines` as it was: the line's as_of and its consumption split each
    read from the meter's reads in a scan of its own."""
    rewriting: Any = _Rewriting(conn)
    return _ONE_SCAN(rewriting, start, end, account_id, after_account, accounts_limit)


class _Explaining:
    """A connection whose ``execute`` explains the query it is given, run (``EXPLAIN ANALYZE``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, query: str, params: dict[str, Any]) -> psycopg.Cursor[Any]:
        return self.conn.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " + query, params)


def pages_read(conn: psycopg.Connection[Any], lines_of: Callable[..., list[dict[str, Any]]]) -> int:
    """The shared buffers (8 kB pages, in memory or not) one run of the month's query reads: its work,
    counted, however busy the machine is (which its times are not)."""
    explaining: Any = _Explaining(conn)
    ((plan,),) = (row.values() for row in lines_of(explaining, START, END, None, None, None))
    top = plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            reads = fill(conn, args.accounts)
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            key = create_api_key(conn, "bench billing", ["billing"])
        with (
            psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn,  # dict rows, as the app's
            TestClient(create_app(url)) as client,
        ):
            conn.execute("SET jit = off; SET TIME ZONE 'UTC'")  # as the app's (server.db.SESSION_SETTINGS)
            headers = {"Authorization": f"Bearer {key}"}
            path = f"/billing/determinants?period={PERIOD}&limit=5000"
            now = repository.determinant_lines
            ways: dict[str, Callable[..., list[dict[str, Any]]]] = {"one scan": now, "baseline": baseline_lines}
            query: dict[str, list[float]] = {way: [] for way in ways}
            request: dict[str, list[float]] = {way: [] for way in ways}
            answers: dict[str, set[bytes]] = {way: set() for way in ways}
            lines = 0
            pages = {way: pages_read(conn, lines_of) for way, lines_of in ways.items()}
            try:
                for _ in range(args.repeat):
                    for way, lines_of in ways.items():
                        seconds, rows = _timed(lambda: lines_of(conn, START, END, None, None, None))  # noqa: B023
                        query[way].append(seconds)
                        lines = len(rows)
                        repository.determinant_lines = lines_of  # what the router calls
                        seconds, response = _timed(lambda: client.get(path, headers=headers))
                        repository.determinant_lines = now
                        assert response.status_code == 200, response.text
                        request[way].append(seconds)
                        answers[way].add(response.content)
            finally:
                repository.determinant_lines = now
        same = answers["one scan"] == answers["baseline"] and len(answers["one scan"]) == 1
        print(
            f"{args.accounts:,} accounts, {lines:,} lines, {reads:,} reads; the answers byte for byte the same: {same}"
        )
        medians = {}
        for name, times in (("determinant_lines", query), (f"GET {path}", request)):
            for way in ways:
                medians[name, way] = statistics.median(times[way])
                print(
                    f"{name} ({way}): median {medians[name, way] * 1000:.0f} ms, best {min(times[way]) * 1000:.0f} ms"
                )
        print(
            "determinants in one scan against the baseline: "
            f"query {medians['determinant_lines', 'baseline'] / medians['determinant_lines', 'one scan']:.2f}x faster, "
            f"request {medians[f'GET {path}', 'baseline'] / medians[f'GET {path}', 'one scan']:.2f}x (median)"
        )
        print(
            f"pages read by the month's query: one scan {pages['one scan']:,}, baseline {pages['baseline']:,}: "
            f"{pages['baseline'] / pages['one scan']:.2f}x fewer"
        )
        if not same:
            raise SystemExit("the one-scan answer differs from the baseline's")
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
