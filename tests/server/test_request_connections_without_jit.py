"""The server's request connections run with PostgreSQL's JIT off (server.db: each pooled connection
is set so), so a page whose plan's estimated cost passes ``jit_above_cost`` is not compiled at every
view. The meter page's daily query, estimated at 117,599 before its rewrite, compiled 462 functions
at every view (83 ms of a page its query answered in 2 ms); at 300 meters read hourly for 3 years,
the whole fleet's NEM12 download compiles 5,138 (3.4 s, 1.2 s with JIT off: benchmarks/
server_queries_jit.py).

A plan's cost grows with the fleet; the test's fleet is one meter, so the database's
``jit_above_cost`` is set to 0 here: every plan passes it, as the meter page's did at a real fleet's
size. A plain connection to the same database is the control: there the same query is compiled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from server.app import create_app
from server.auth import create_api_key
from server.db import lent
from server.meters.repository import register_meters
from tests.query_plans import queries_run

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def every_plan_over_the_jit_threshold(migrated_database_url: str) -> Iterator[str]:
    """The database with jit on and jit_above_cost 0 for every new session, and meter M1 read hourly
    for three days, its consumption stored."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        (available,) = conn.execute("SELECT pg_jit_available()").fetchone() or (False,)
        assert available, "this PostgreSQL was built without LLVM: JIT cannot be tested here"
        for setting in ("jit = on", "jit_above_cost = 0"):
            conn.execute(sql.SQL("ALTER DATABASE {} SET " + setting).format(sql.Identifier(name)))
        register_meters(conn, [("M1", "D1", "customer")])
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")
        for hour in range(73):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M1', %s, %s)",
                (T0 + timedelta(hours=hour), Decimal("100") + Decimal(hour) / 100),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=4)))
    yield migrated_database_url


def _jit_compiled(conn: psycopg.Connection[Any], query: str, params: Any) -> bool:
    """Whether ``query``'s plan, run (EXPLAIN ANALYZE), was JIT-compiled: its JSON has a JIT section
    with functions compiled."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    (plan,) = row.values() if isinstance(row, dict) else row
    return int(plan[0].get("JIT", {}).get("Functions", 0)) > 0


def test_the_server_s_connections_have_jit_off(every_plan_over_the_jit_threshold: str) -> None:
    with (
        TestClient(create_app(every_plan_over_the_jit_threshold)) as client,
        lent(client.app.state.pool, 5) as conn,  # type: ignore[attr-defined]
    ):
        assert conn.execute("SHOW jit").fetchone() == {"jit": "off"}
    with psycopg.connect(every_plan_over_the_jit_threshold) as plain:
        assert plain.execute("SHOW jit").fetchone() == ("on",)  # the database's own setting is left as it is


def test_the_meter_page_s_queries_are_not_jit_compiled_on_the_server_s_connections(
    every_plan_over_the_jit_threshold: str,
) -> None:
    url = every_plan_over_the_jit_threshold
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "care", ["customer_care"])
    with TestClient(create_app(url)) as client:
        with queries_run(lambda text: text.lstrip().upper().startswith(("SELECT", "WITH"))) as ran:
            response = client.get("/care/meters/M1", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        daily = [(q, p) for q, p in ran if "consumption_daily" in q]
        assert daily, "the meter page ran no query of the stored daily consumption"
        with psycopg.connect(url, autocommit=True) as plain:
            plain.execute("SET TIME ZONE 'UTC'")
            assert all(_jit_compiled(plain, q, p) for q, p in daily)  # the control: over the threshold
        with lent(client.app.state.pool, 5) as conn:  # type: ignore[attr-defined]
            compiled = [q.split()[:6] for q, p in ran if _jit_compiled(conn, q, p)]
    assert compiled == []
