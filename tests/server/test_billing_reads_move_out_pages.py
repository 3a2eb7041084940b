"""A page of a billing system's changed_since pull after a large move-out dated back reads about a
page's worth of reads, not every read the move-out took from the account.

Before, each page of such a pull listed every read the account had lost since (and checked every
read of the account for a change) and kept the first ``limit``: on a landlord's 1,000 units read
hourly, a move-out dated back 20 days (480,000 reads removed) cost about 0.8 s a page, for each of its
480 pages (benchmarks/bench_billing_move_out.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import create_api_key
from tests.query_plans import explained_nodes, queries_run

START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 10
UNITS = 50
MOVED_OUT = START + timedelta(days=2)
PULL = {"from": START.isoformat(), "to": (START + timedelta(days=DAYS)).isoformat()}
LIMIT = 100


@pytest.fixture
def landlord(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], psycopg.Connection, str]]:
    """Account LL supplied at 50 service points, each with its meter read hourly for 10 days; a pull's
    next_changed_since, then the move-out of every unit dated back to the second day."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        unit = "lpad(i::text, 3, '0')"
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('LL', 'landlord')")
        conn.execute(
            f"INSERT INTO meters (meter_id, registered) SELECT 'M-' || {unit}, true FROM generate_series(1, %s) i",
            (UNITS,),
        )
        conn.execute(
            f"INSERT INTO service_points (service_point_id) SELECT 'SP-' || {unit} FROM generate_series(1, %s) i",
            (UNITS,),
        )
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
            f" SELECT 'LL', 'SP-' || {unit}, '2025-01-01Z' FROM generate_series(1, %s) i",
            (UNITS,),
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
            f" SELECT 'SP-' || {unit}, 'M-' || {unit}, '2026-10-01Z' FROM generate_series(1, %s) i",
            (UNITS,),
        )
        conn.execute(
            f"""
            INSERT INTO readings (meter_id, ts, volume_m3, received_at)
            SELECT 'M-' || {unit}, ts, 100 + h * 0.01, ts + interval '5 minutes'
            FROM generate_series(1, %s) i, generate_series(0, %s) h,
                 LATERAL (SELECT %s::timestamptz + h * interval '1 hour' AS ts) x
            """,
            (UNITS, DAYS * 24 - 1, START),
        )
        with TestClient(create_app(migrated_database_url)) as client:
            headers = {"Authorization": f"Bearer {key}"}
            since = client.get("/billing/reads", params={**PULL, "account": "LL"}, headers=headers).json()
            conn.execute("UPDATE service_agreements SET end_at = %s WHERE account_id = 'LL'", (MOVED_OUT,))
            conn.execute("ANALYZE")
            yield client, headers, conn, since["next_changed_since"]


def _rows_read(nodes: list[dict[str, Any]]) -> int:
    """The rows the plan fetched from readings (its chunks) and reading_history, kept or dropped."""
    read = [n for n in nodes if str(n.get("Relation Name", "")).startswith(("readings", "_hyper", "reading_history"))]
    return sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"] for n in read)


def test_a_page_of_a_move_out_dated_back_reads_about_a_page_of_reads(landlord) -> None:
    """No timing here: 50 units' move-out dated back 8 days removes 9,600 reads, 96 pages of 100. The
    second page and the fortieth, recorded from GET /billing/reads, read at most 20 pages' worth of
    reads each, all queries together (before: every read of the account, or removed from it, after the
    page's start, on every page: 9,500 rows on the second). Their keys are the removed ones, in order. (The first
    page reads the two days' reads before the move-out, unchanged, to find that none changed.)"""
    client, headers, conn, since = landlord
    params = {**PULL, "account": "LL", "changed_since": since, "limit": LIMIT}
    pages: list[dict[str, Any]] = []
    address = None
    for number in range(40):
        with queries_run(lambda text: "readings" in text) as recorded:
            answer = (
                client.get(address, headers=headers)
                if address
                else client.get("/billing/reads", params=params, headers=headers)
            )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages.append(page)
        if number in (1, 39):
            assert recorded
            read = sum(_rows_read(explained_nodes(conn, text, values)) for text, values in recorded)
            assert read <= 20 * LIMIT, (number, read)
        address = page["next"]
    removed = [(r["ts"], r["meter_id"]) for page in pages for r in page["removed"]]
    assert all(page["items"] == [] for page in pages) and len(removed) == 40 * LIMIT
    expected = conn.execute(
        "SELECT ts, meter_id FROM readings WHERE ts >= %s ORDER BY ts, meter_id LIMIT %s", (MOVED_OUT, 40 * LIMIT)
    ).fetchall()
    assert [(datetime.fromisoformat(ts.replace("Z", "+00:00")), meter) for ts, meter in removed] == expected


def _keys(client: TestClient, headers: dict[str, str], params: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every key a pull's pages give, in their order: (ts, meter_id, "item" or "removed")."""
    keys: list[tuple[str, str, str]] = []
    page = client.get("/billing/reads", params=params, headers=headers).json()
    while True:
        keys += sorted(
            [(i["ts"], i["meter_id"], "item") for i in page["items"]]
            + [(r["ts"], r["meter_id"], "removed") for r in page["removed"]]
        )
        if not page["next"]:
            return keys
        page = client.get(page["next"], headers=headers).json()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(170, 3000), rewritten=st.lists(st.integers(0, UNITS * DAYS * 24 - 1), max_size=5))
def test_the_pages_of_a_move_out_add_up_to_one_page_of_it(landlord, limit: int, rewritten: list[int]) -> None:
    """Whatever the limit, and with reads rewritten since here and there (items among the removed
    keys), the pages give the keys one page of 10,000 gives, in the same order, each once."""
    client, headers, conn, since = landlord
    for n in rewritten:
        conn.execute(
            "UPDATE readings SET received_at = now() WHERE meter_id = %s AND ts = %s",
            (f"M-{n % UNITS + 1:03d}", START + timedelta(hours=n // UNITS)),
        )
    params = {**PULL, "account": "LL", "changed_since": since}
    whole = _keys(client, headers, {**params, "limit": 10_000})
    assert len([k for k in whole if k[2] == "removed"]) == 9600
    assert _keys(client, headers, {**params, "limit": limit}) == whole
