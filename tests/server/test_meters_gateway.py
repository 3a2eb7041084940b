"""GET /meters names the gateway that delivered a meter's latest reading and the gateways assigned
to it now. It served meters.last_gateway_id, the gateway the meter was first heard from, which the
collector never updates: after a move (assign-meters) it named the old gateway for good."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.store import ReadingStore
from server.app import create_app
from server.auth import create_api_key
from tests.collector.test_meter_gateways import _assign, _write

T0, T1, T2 = "2026-03-01T00:00:00Z", "2026-03-01T02:00:00Z", "2026-03-01T04:00:00Z"


@pytest.fixture
def reader(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "test reader", ["reader"])
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {"Authorization": f"Bearer {key}"}


def _meter(client: TestClient, headers: dict[str, str], meter_id: str) -> dict[str, Any]:
    """The meter as GET /meters/{id} serves it, checked to be as GET /meters lists it."""
    one = client.get(f"/meters/{meter_id}", headers=headers)
    assert one.status_code == 200, one.text
    (listed,) = [m for m in client.get("/meters", headers=headers).json()["items"] if m["meter_id"] == meter_id]
    assert listed == one.json()
    meter: dict[str, Any] = one.json()
    return meter


def _served_at_each_step(url: str, served: Callable[[], Any]) -> dict[str, Any]:
    """What ``served`` gives after each step: WM-MOVED first heard from gw-a, moved to gw-b, delivered
    by gw-b, then a second receiver gw-c added, delivering the latest reading, then a later estimate
    (VEE's: no gateway)."""
    seen: dict[str, Any] = {}
    store = ReadingStore(url)
    try:
        _write(store, "gw-a", 1, [("WM-MOVED", T0, 1.0)])  # first heard from gw-a: assigned to it
        seen["heard from gw-a"] = served()
        _assign(url, "WM-MOVED", "--gateway", "gw-b")  # moved to gw-b, which has delivered nothing yet
        seen["moved to gw-b"] = served()
        _write(store, "gw-b", 1, [("WM-MOVED", T1, 1.5)])
        seen["delivered by gw-b"] = served()
        _assign(url, "WM-MOVED", "--gateway", "gw-c", "--add")  # a second receiver
        _write(store, "gw-c", 1, [("WM-MOVED", T2, 2.0)])
        seen["delivered by gw-c"] = served()
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
            "VALUES ('WM-MOVED', '2026-03-01T06:00:00Z', 2.5, 'estimated', 'vee', 'gap')"
        )
    seen["estimated"] = served()
    return seen


def test_last_gateway_id_is_the_gateway_that_delivered_the_latest_reading(
    reader: tuple[TestClient, dict[str, str]], migrated_database_url: str
) -> None:
    """Before: gw-a at every step, the gateway the meter was first heard from."""
    client, headers = reader
    expected = {
        "heard from gw-a": "gw-a",
        "moved to gw-b": "gw-a",  # (its latest reading is still gw-a's)
        "delivered by gw-b": "gw-b",
        "delivered by gw-c": "gw-c",
        "estimated": "gw-c",  # an estimate has no gateway: the one assigned last
    }
    served = _served_at_each_step(migrated_database_url, lambda: _meter(client, headers, "WM-MOVED")["last_gateway_id"])
    assert served == expected


def test_gateways_are_those_assigned_to_the_meter_now(
    reader: tuple[TestClient, dict[str, str]], migrated_database_url: str
) -> None:
    client, headers = reader
    expected = {
        "heard from gw-a": ["gw-a"],
        "moved to gw-b": ["gw-b"],
        "delivered by gw-b": ["gw-b"],
        "delivered by gw-c": ["gw-c", "gw-b"],  # the latest assigned first
        "estimated": ["gw-c", "gw-b"],
    }
    served = _served_at_each_step(migrated_database_url, lambda: _meter(client, headers, "WM-MOVED")["gateways"])
    assert served == expected
