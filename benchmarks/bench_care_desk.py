"""The care desk's pages (server.care.desk) on 150,000 enquiries, 45,000 of them being worked.

Walks every page of the list by meter (a busy meter's 1,500 enquiries alone and with a status, a
priority or both, or a source, and an ordinary meter's 10), then unfiltered, by status, by each
priority (and by each priority among the closed), by source, and by each status being worked alone
and with each priority, as the page's next links do, 50 to a page, and prints for each walk its
pages, the median and the worst page's time in the database (``EXPLAIN ANALYZE``'s execution time,
the best of three), and the most rows a page fetched from enquiries, kept or dropped. Then, in the
same run, three baselines and the ratios of their median and worst pages to these: the walks by
meter as the desk would have read them before server migration 0059 (its index, the desk's order
within each meter, dropped, and 0042's index on the meter alone, which 0059 replaced, back), the
walks by a status being worked as the desk read them before server migration 0058 (its index
dropped, and ``priority = …`` asked beside the rank: on 2026-12-06 a page of open urgent ones fetched
1,550 rows through a bitmap and a sort, of open ones 201), and the walks filtered by priority with
server migration 0055's index (the desk order within each priority) dropped, as the desk read them
before it (the worst page of urgent fetched 40,709 rows without it).

    python -m benchmarks.bench_care_desk                 # a fresh database on the test server
    python -m benchmarks.bench_care_desk --enquiries 20000
    python -m benchmarks.bench_care_desk --meters-only   # the walks by meter and their baseline alone
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import psycopg
from psycopg.rows import dict_row

from collector.migrate import migrate
from server.care import desk
from tests.query_plans import plan_nodes
from tests.services import admin_url, create_database, drop_database

PER_PAGE = 50
#: The statuses of the enquiries being worked (not closed).
WORKED = ("open", "in_progress", "escalated")


def fill(conn: psycopg.Connection[Any], enquiries: int) -> None:
    """``enquiries`` over two years: 30% being worked (open, in progress, escalated), the rest
    closed; 10% urgent, 20% high, 40% normal, 30% low; 2% raised by customers; 1% naming meter BUSY,
    the rest 10 to a meter (M0 to M14998). Seeded."""
    conn.execute("SELECT setseed(0.17)")
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, meter_id, opened_at, updated_at,
                               closed_at)
        SELECT 'enquiry', 'meter fault', source, status, priority, 'subject', meter, opened, opened,
               CASE WHEN status = 'closed' THEN opened END
        FROM (
            SELECT CASE WHEN random() < 0.02 THEN 'customer' WHEN random() < 0.5 THEN 'staff' ELSE 'detection' END
                       AS source,
                   CASE WHEN random() < 0.7 THEN 'closed'
                        ELSE (ARRAY['open', 'in_progress', 'escalated'])[1 + floor(random() * 3)::int] END AS status,
                   (SELECT CASE WHEN p < 0.1 THEN 'urgent' WHEN p < 0.3 THEN 'high' WHEN p < 0.7 THEN 'normal'
                                ELSE 'low' END FROM (SELECT random() + 0 * i AS p) x) AS priority,
                   timestamptz '2024-12-01 00:00Z' + random() * interval '730 days' AS opened,
                   CASE WHEN i %% 100 = 0 THEN 'BUSY' ELSE 'M' || i %% 14999 END AS meter
            FROM generate_series(1, %s) i
        ) e
        """,
        (enquiries,),
    )
    conn.execute("VACUUM ANALYZE enquiries")


def _explained(
    conn: psycopg.Connection[Any], asked: desk.DeskFilter, after: desk.Position | None
) -> tuple[float, int, str]:
    """The page's query as the desk runs it, explained as run, three times: the best execution time in
    the database (ms), the rows its plan fetched from enquiries (kept or dropped), the index it read."""
    execute = psycopg.Connection.execute

    def explaining(self: psycopg.Connection[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        return execute(self, "EXPLAIN (ANALYZE, FORMAT JSON) " + query, params, **kwargs)

    best, touched, index = float("inf"), 0, ""
    setattr(psycopg.Connection, "execute", explaining)  # noqa: B010
    try:
        for _ in range(3):
            explained = desk.desk_page(conn, asked, after, PER_PAGE + 1)[0]["QUERY PLAN"]
            plan = explained if isinstance(explained, list) else json.loads(explained)
            read = [n for n in plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == "enquiries"]
            touched = sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in read)
            index = ",".join(n.get("Index Name", n["Node Type"]) for n in read)
            best = min(best, plan[0]["Execution Time"])
    finally:
        setattr(psycopg.Connection, "execute", execute)  # noqa: B010
    return best, touched, index


def vars_of(asked: desk.DeskFilter) -> dict[str, str | None]:
    return {name: getattr(asked, name) for name in ("status", "priority", "category", "source", "meter")}


def walk(conn: psycopg.Connection[Any], asked: desk.DeskFilter) -> tuple[float, float]:
    """Every page of the list ``asked``, printed in one line; its median and worst page's time (ms)."""
    pages: list[tuple[float, int, str]] = []
    after: desk.Position | None = None
    while True:
        pages.append(_explained(conn, asked, after))
        rows = desk.desk_page(conn, asked, after, PER_PAGE + 1)
        if len(rows) <= PER_PAGE:
            break
        after = desk.Position.of(rows[PER_PAGE - 1])
    median = statistics.median(ms for ms, _, _ in pages)
    worst = max(ms for ms, _, _ in pages)
    most = max(touched for _, touched, _ in pages)
    indexes = sorted({index for _, _, index in pages})
    asked_for = " ".join(f"{name}={value}" for name, value in vars_of(asked).items() if value is not None)
    print(
        f"{asked_for:<34} pages {len(pages):>5}  "
        f"median {median:5.2f} ms  worst {worst:6.2f} ms  most rows fetched {most:>6}  ({', '.join(indexes)})"
    )
    return median, worst


def ratios(walks: list[desk.DeskFilter], now: list[tuple[float, float]], before: list[tuple[float, float]]) -> None:
    """Each walk's median and worst page now against the same walk's in the baseline."""
    for asked, (median, worst), (median_before, worst_before) in zip(walks, now, before, strict=True):
        asked_for = " ".join(f"{name}={value}" for name, value in vars_of(asked).items() if value is not None)
        print(
            f"{asked_for:<34} with the index: median {median_before / median:6.1f}x, "
            f"worst page {worst_before / worst:6.1f}x faster than without"
        )


#: The walks by meter: the busy meter's 1,500 enquiries, alone and with each other filter, and an
#: ordinary meter's 10.
BY_METER = [
    desk.DeskFilter(meter="BUSY"),
    desk.DeskFilter(meter="BUSY", status="closed"),
    desk.DeskFilter(meter="BUSY", status="open"),
    desk.DeskFilter(meter="BUSY", priority="urgent"),
    desk.DeskFilter(meter="BUSY", status="open", priority="high"),
    desk.DeskFilter(meter="BUSY", source="customer"),
    desk.DeskFilter(meter="M42"),
]


def meter_walks(conn: psycopg.Connection[Any]) -> None:
    """The walks by meter, then again as the desk would have read them before server migration 0059
    (its index dropped, 0042's on the meter alone, which it replaced, back), and the ratios. Leaves the
    indexes as they were."""
    now = [walk(conn, asked) for asked in BY_METER]
    print("baseline: the walks by meter without server migration 0059's index, with 0042's on the")
    print("meter alone, which it replaced")
    conn.execute("DROP INDEX enquiries_care_desk_by_meter_idx")
    conn.execute("CREATE INDEX enquiries_meter_idx ON enquiries (meter_id)")
    conn.execute("ANALYZE enquiries")
    before = [walk(conn, asked) for asked in BY_METER]
    ratios(BY_METER, now, before)
    conn.execute("DROP INDEX enquiries_meter_idx")
    conn.execute(
        "CREATE INDEX enquiries_care_desk_by_meter_idx"
        " ON enquiries (meter_id, enquiry_care_rank(status, priority), opened_at, enquiry_id)"
    )
    conn.execute("ANALYZE enquiries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enquiries", type=int, default=150_000)
    parser.add_argument("--meters-only", action="store_true", help="walk by meter only (and its baseline)")
    args = parser.parse_args()
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            fill(conn, args.enquiries)
            counts = conn.execute(
                "SELECT count(*) AS n, count(*) FILTER (WHERE status <> 'closed') AS worked FROM enquiries"
            ).fetchone()
            print(f"{counts['n']:,} enquiries, {counts['worked']:,} being worked")  # type: ignore[index]
            meter_walks(conn)
            if args.meters_only:
                return
            for status in (None, "closed"):  # the statuses being worked: below, beside their baseline
                walk(conn, desk.DeskFilter(status=status))
            by_priority = [desk.DeskFilter(status=s, priority=p) for s in (None, "closed") for p in desk.PRIORITIES]
            indexed = [walk(conn, asked) for asked in by_priority]
            for status in (None, "closed"):
                walk(conn, desk.DeskFilter(status=status, source="customer"))
            worked = [desk.DeskFilter(status=s, priority=p) for s in WORKED for p in (None, *desk.PRIORITIES)]
            by_status = [walk(conn, asked) for asked in worked]
            print("baseline: the walks by a status being worked as before server migration 0058 (its index")
            print("dropped, and priority = … asked beside the rank that says it)")
            conn.execute("DROP INDEX enquiries_care_desk_by_status_idx")
            conn.execute("ANALYZE enquiries")
            rank_is_priority = desk.DeskFilter.rank_is_priority
            setattr(desk.DeskFilter, "rank_is_priority", lambda _: False)  # noqa: B010
            try:
                status_before = [walk(conn, asked) for asked in worked]
            finally:
                setattr(desk.DeskFilter, "rank_is_priority", rank_is_priority)  # noqa: B010
            ratios(worked, by_status, status_before)
            print("baseline: the walks by priority without server migration 0055's index")
            conn.execute("DROP INDEX enquiries_care_desk_by_priority_idx")
            conn.execute("ANALYZE enquiries")
            before = [walk(conn, asked) for asked in by_priority]
            ratios(by_priority, indexed, before)
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
