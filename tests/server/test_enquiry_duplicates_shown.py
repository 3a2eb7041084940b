"""An enquiry folded into another as its duplicate (server migration 0045's duplicate_of) says so in
GET /enquiries, GET /enquiries/{id}, the care desk and the enquiry's page, and the one it was folded
into lists it. Before, only the two enquiries' notes said so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.alert_store import save_changes
from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key

LEAK_SEEN = datetime(2026, 3, 2, 4, tzinfo=UTC)
GREW = LEAK_SEEN + timedelta(days=1)
OWN = {"Origin": "http://testserver"}


def _alert(kind: AlertKind, rate_l_h: float, start: datetime, detected: datetime) -> Alert:
    return new_alert(
        kind, "M1", "D1", start=start, detected_at=detected, last_seen=detected, ended_at=None,
        rate_l_h=rate_l_h, volume_l=rate_l_h, confidence=0.9, evidence=((detected, detected),),
    ).replace(updated_at=detected)  # fmt: skip


@pytest.fixture
def site(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {"reader": create_api_key(conn, "rita", ["reader"])}
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, {"Authorization": f"Bearer {keys['reader']}", **keys}


def _sign_in(client: TestClient, key: str) -> None:
    client.cookies.clear()
    signed_in = client.post("/login", data={"key": key}, headers=OWN, follow_redirects=False)
    assert SESSION_COOKIE in signed_in.headers["set-cookie"]


def test_a_burst_folded_into_a_leak_s_enquiry_says_so_and_the_leak_s_lists_it(site) -> None:
    client, conn, keys = site
    header = {"Authorization": keys["Authorization"]}
    leak = _alert(AlertKind.LEAK, 25.0, LEAK_SEEN - timedelta(hours=5), LEAK_SEEN)
    burst = _alert(AlertKind.BURST, 600.0, GREW - timedelta(hours=1), GREW)
    save_changes(conn, AlertChanges(opened=[leak]))
    save_changes(conn, AlertChanges(opened=[burst]))
    ids = dict(conn.execute("SELECT alert_id, enquiry_id FROM enquiries").fetchall())
    kept, folded = ids[leak.alert_id], ids[burst.alert_id]

    listed = {e["enquiry_id"]: e["duplicate_of"] for e in client.get("/enquiries", headers=header).json()["items"]}
    assert listed == {kept: None, folded: kept}
    survivor = client.get(f"/enquiries/{kept}", headers=header).json()
    assert (survivor["duplicate_of"], survivor["duplicates"]) == (None, [folded])
    duplicate = client.get(f"/enquiries/{folded}", headers=header).json()
    assert (duplicate["status"], duplicate["duplicate_of"], duplicate["duplicates"]) == ("closed", kept, [])

    _sign_in(client, keys["reader"])
    page = client.get(f"/care/enquiries/{folded}").text
    assert f'Folded into <a href="/care/enquiries/{kept}">enquiry #{kept}</a> as its duplicate' in page
    page = client.get(f"/care/enquiries/{kept}").text
    assert f'<dt>Folded into it</dt><dd><a href="/care/enquiries/{folded}">enquiry #{folded}</a> (closed' in page
    assert "as its duplicate: the work goes on there" not in page
    desk = client.get("/care/enquiries").text
    assert f'closed, folded into <a href="/care/enquiries/{kept}">#{kept}</a></td>' in desk


def test_the_openapi_schema_has_both_links(site) -> None:
    client, _, _ = site
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "duplicate_of" in schemas["Enquiry"]["required"]
    assert "duplicates" in schemas["EnquiryWithUpdates"]["required"]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=st.lists(st.integers(-1, 8), min_size=1, max_size=9))
def test_each_enquiry_names_the_one_it_was_folded_into_and_those_folded_into_it(site, links: list[int]) -> None:
    """``links[i]``: the earlier enquiry the i-th was folded into (none when negative or not earlier)."""
    client, conn, keys = site
    header = {"Authorization": keys["Authorization"]}
    conn.execute("DELETE FROM enquiries")
    ids: list[int] = []
    into: dict[int, int | None] = {}
    for i, link in enumerate(links):
        target = ids[link] if 0 <= link < i else None
        row = conn.execute(
            "INSERT INTO enquiries (kind, category, source, subject, duplicate_of) "
            "VALUES ('enquiry', 'billing', 'staff', 's', %s) RETURNING enquiry_id",
            (target,),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
        into[row[0]] = target
    listed = {e["enquiry_id"]: e["duplicate_of"] for e in client.get("/enquiries", headers=header).json()["items"]}
    assert listed == into
    for enquiry_id in ids:
        answer = client.get(f"/enquiries/{enquiry_id}", headers=header).json()
        assert answer["duplicate_of"] == into[enquiry_id]
        assert answer["duplicates"] == sorted(other for other, target in into.items() if target == enquiry_id)
