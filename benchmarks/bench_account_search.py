"""The care desk's search by account number in any case (server.care.fitted.meters_of_account_now) on
20,000 service agreements: each search's time in the database (``EXPLAIN ANALYZE``'s execution time,
the best of three) and the agreements its plan read, for accounts typed in upper, lower and mixed case
and for a number no account has; then, in the same run, the same searches without server migration
0064's index on ``lower(account_id)`` (the baseline: a sequential scan of every agreement), and the
ratio of the two medians.

    python -m benchmarks.bench_account_search                  # a fresh database on the test server
    python -m benchmarks.bench_account_search --agreements 200000
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import psycopg

from collector.migrate import migrate
from server.care.fitted import METERS_OF_ACCOUNT_NOW
from tests.query_plans import plan_nodes
from tests.services import admin_url, create_database, drop_database

INDEX = "service_agreements_account_any_case_idx"


def fill(conn: psycopg.Connection[Any], agreements: int) -> None:
    """``agreements`` accounts ACC-0 …, each holding one service point with its meter fitted."""
    last = str(agreements - 1)
    conn.execute(
        f"""
        INSERT INTO meters (meter_id, dma, role) SELECT 'M' || i, 'D1', 'customer' FROM generate_series(0, {last}) i;
        INSERT INTO accounts (account_id, name) SELECT 'ACC-' || i, 'N' FROM generate_series(0, {last}) i;
        INSERT INTO service_points (service_point_id) SELECT 'SP-' || i FROM generate_series(0, {last}) i;
        INSERT INTO service_agreements (account_id, service_point_id, start_at)
            SELECT 'ACC-' || i, 'SP-' || i, '2025-01-01Z' FROM generate_series(0, {last}) i;
        INSERT INTO meter_installations (service_point_id, meter_id, installed_at)
            SELECT 'SP-' || i, 'M' || i, '2025-01-01Z' FROM generate_series(0, {last}) i;
        """
    )
    conn.execute("VACUUM ANALYZE service_agreements")


def search(conn: psycopg.Connection[Any], typed: str) -> tuple[float, int, str]:
    """The search's best execution time of three (ms), the agreements its plan read, how it read them."""
    best, read, how = float("inf"), 0, ""
    for _ in range(3):
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + METERS_OF_ACCOUNT_NOW, (typed,)).fetchone()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        nodes = list(plan_nodes(plan[0]["Plan"]))
        agreements = [node for node in nodes if node.get("Relation Name") == "service_agreements"]
        best = min(best, float(plan[0]["Execution Time"]))
        read = sum(int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0)) for node in agreements)
        how = ", ".join(f"{node['Node Type']} {node.get('Index Name', '')}".strip() for node in agreements)
    return best, read, how


def searches(conn: psycopg.Connection[Any], typed: list[str]) -> list[float]:
    times = []
    for text in typed:
        ms, read, how = search(conn, text)
        times.append(ms)
        print(f"  {text!r:>14}: {ms:7.3f} ms, {read:>7,} agreements read ({how})")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agreements", type=int, default=20_000)
    args = parser.parse_args()
    n = args.agreements
    typed = [f"ACC-{n // 2}", f"acc-{n // 3}", f"Acc-{n - 1}", "acc-0", "ACC-NONE"]
    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, n)
            print(f"{n:,} service agreements; the account search in any case, with server migration 0064's index")
            indexed = searches(conn, typed)
            print("baseline: the same searches without it (as before server migration 0064)")
            conn.execute(f"DROP INDEX {INDEX}")
            conn.execute("ANALYZE service_agreements")
            before = searches(conn, typed)
        now_ms, before_ms = statistics.median(indexed), statistics.median(before)
        print(
            f"account search with the index: median {now_ms:.3f} ms against {before_ms:.3f} ms without: "
            f"{before_ms / now_ms:.1f}x faster"
        )
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
