"""``GET /enquiries?priority=`` filters by priority, as the care desk's page does: before, the API had
no such filter and answered every priority (now the parameter would be refused as unknown)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from server.care.desk import PRIORITIES
from tests.server.test_alerts_api import alert  # an alert detected hours after T0, as the alerts API's tests make


@pytest.fixture
def care(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A client and a reader's headers, on the enquiries of a burst (urgent), a leak (high) and a
    stuck register (low), which detection's rules raise (server migration 0030)."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "test reader", ["reader"])
        opened = [alert(AlertKind.BURST, "M1", 0), alert(AlertKind.LEAK, "M2", 1), alert(AlertKind.STUCK, "M3", 2)]
        with conn.transaction():
            save_changes(conn, AlertChanges(opened=opened))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {"Authorization": f"Bearer {key}"}


def test_enquiries_are_filtered_by_priority(care: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = care
    every = client.get("/enquiries", headers=headers).json()["items"]
    assert sorted(e["priority"] for e in every) == ["high", "low", "urgent"]
    for priority in PRIORITIES:
        answer = client.get("/enquiries", params={"priority": priority}, headers=headers)
        assert answer.status_code == 200, answer.text
        assert [e["meter_id"] for e in answer.json()["items"]] == [
            e["meter_id"] for e in every if e["priority"] == priority
        ]
    both = client.get("/enquiries", params={"priority": "urgent", "meter_id": "M2"}, headers=headers).json()
    assert both["items"] == []


def test_an_unknown_priority_is_refused_with_the_priorities_there_are(care: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = care
    refused = client.get("/enquiries", params={"priority": "critical"}, headers=headers)
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["errors"]
    assert error["location"] == "query/priority"
    assert all(f"'{priority}'" in error["message"] for priority in PRIORITIES), error["message"]
