"""What a ``HEAD`` of a listing costs beside its ``GET`` (server.head runs the ``GET`` whole and drops
the body): a meter's readings (50,000 stored, pages of 10,000 and 1,000) and, as the baseline, a
meter's own record (one row), each the median of alternating requests through the app in-process.

It prints, per path, the ``GET``'s and the ``HEAD``'s medians, their ratio, and the ``GET``'s cost
against the one-row baseline's: a ``HEAD`` costs what its ``GET`` does (the query, the models and
the JSON), no more, as it does in Django, Rails, Starlette's own routes or Go's ``net/http``.

    python -m benchmarks.bench_head                 # a fresh database on the test server
    python -m benchmarks.bench_head --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters
from tests.services import admin_url, migrated_database

READINGS = 50_000
PATHS = ["/meters/M1/readings?limit=10000", "/meters/M1/readings?limit=1000", "/meters/M1"]


def fill(url: str) -> str:
    """Meter M1 with ``READINGS`` quarter-hourly readings; a reader's key."""
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "bench", ["reader"])
        register_meters(conn, [("M1", "D1", "customer")])
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, flow_m3h, alarms, quality) "
            "SELECT 'M1', timestamptz '2026-01-01Z' + i * interval '15 minutes', 100 + i * 0.001, 0.01, '{}', "
            "'actual' FROM generate_series(0, %s - 1) i",
            (READINGS,),
        )
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")
        conn.execute("VACUUM ANALYZE readings")
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="requests of each method per path")
    args = parser.parse_args()
    with migrated_database(admin_url()) as url:
        headers = {"Authorization": f"Bearer {fill(url)}"}
        with TestClient(create_app(url)) as client:
            medians: dict[str, tuple[float, float]] = {}
            for path in PATHS:
                got, head = client.get(path, headers=headers), client.head(path, headers=headers)
                assert got.status_code == head.status_code == 200 and head.content == b"", (got, head)
                assert head.headers["content-length"] == got.headers["content-length"]
                times: dict[str, list[float]] = {"GET": [], "HEAD": []}
                for _ in range(args.rounds):
                    for method in times:  # alternating: the machine's load falls on both alike
                        started = time.perf_counter()
                        client.request(method, path, headers=headers)
                        times[method].append(time.perf_counter() - started)
                medians[path] = (statistics.median(times["GET"]) * 1000, statistics.median(times["HEAD"]) * 1000)
                print(f"{path:<36} body {len(got.content):>10,} B", flush=True)
    baseline = medians[PATHS[-1]][0]
    for path, (get_ms, head_ms) in medians.items():
        print(
            f"{path:<36} GET {get_ms:7.1f} ms  HEAD {head_ms:7.1f} ms  HEAD/GET {head_ms / get_ms:4.2f}  "
            f"GET/one row {get_ms / baseline:6.1f}x"
        )


if __name__ == "__main__":
    main()
