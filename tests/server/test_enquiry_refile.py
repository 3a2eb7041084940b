"""A person reprioritises and recategorises an enquiry (POST /enquiries/{id}/updates' ``priority`` and
``category``, and the enquiry page's form): the change is written on its updates as a status change is
("priority high → urgent"), with who; a category is one of the care desk's; setting either to what it
is already is refused, as a status is; nothing is saved on a refusal. Detection then leaves a person's
category alone when its alert's kind changes (server migration 0032). Before, neither could change:
a care agent could not categorise an enquiry, nor raise a leak that turned out to flood a cellar to
urgent, and the API took neither field (an unknown member: 422)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key

DETECTED = datetime(2026, 3, 2, 4, tzinfo=UTC)
OWN = {"Origin": "http://testserver"}


@pytest.fixture
def leak(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str], int, str]]:
    """A client, a connection, keys by role, the enquiry a leak on M1 raised (high, customer leak), its alert."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, role, [role]) for role in ("customer_care", "reader")}
        alert = new_alert(
            AlertKind.LEAK, "M1", "D1", start=DETECTED - timedelta(hours=30), detected_at=DETECTED,
            last_seen=DETECTED, ended_at=None, rate_l_h=25.0, volume_l=750.0, confidence=0.5,
            evidence=((DETECTED - timedelta(hours=30), DETECTED),),
        ).replace(updated_at=DETECTED)  # fmt: skip
        save_changes(conn, AlertChanges(opened=[alert]))
        row = conn.execute("SELECT enquiry_id FROM enquiries WHERE alert_id = %s", (alert.alert_id,)).fetchone()
        assert row is not None
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys, row[0], alert.alert_id


def _enquiry(conn: psycopg.Connection, enquiry_id: int) -> tuple[str, str, str, list[tuple[str, str]]]:
    row = conn.execute("SELECT status, priority, category FROM enquiries WHERE enquiry_id = %s", (enquiry_id,))
    status, priority, category = row.fetchone() or ("", "", "")
    updates = conn.execute(
        "SELECT by, note FROM enquiry_updates WHERE enquiry_id = %s ORDER BY at, update_id", (enquiry_id,)
    ).fetchall()
    return status, priority, category, [(by, note) for by, note in updates]


def _api(client: TestClient, key: str, enquiry_id: int, body: dict[str, Any]) -> Any:
    return client.post(f"/enquiries/{enquiry_id}/updates", json=body, headers={"Authorization": f"Bearer {key}"})


def test_the_api_reprioritises_and_recategorises_and_says_so_on_the_updates(leak) -> None:
    client, conn, keys, enquiry_id, _ = leak
    assert _enquiry(conn, enquiry_id)[:3] == ("open", "high", "customer leak")
    body = {"priority": "urgent", "category": "customer burst", "note": "water in the cellar, called the crew"}
    answer = _api(client, keys["customer_care"], enquiry_id, body)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["priority"], answer.json()["category"]) == ("urgent", "customer burst")
    status, priority, category, updates = _enquiry(conn, enquiry_id)
    assert (status, priority, category) == ("open", "urgent", "customer burst")
    note = "priority high → urgent; category customer leak → customer burst; water in the cellar, called the crew"
    assert updates[-1] == ("customer_care", note)


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ({"priority": "high"}, 409, "the enquiry's priority is already high"),
        ({"category": "customer leak"}, 409, "the enquiry's category is already customer leak"),
        ({"category": "no such thing"}, 422, "there is no category 'no such thing'"),
        ({"priority": "critical"}, 422, "priority"),
        ({"category": "x" * 65}, 422, "category"),
        ({"status": "in_progress", "category": "no such thing"}, 422, "there is no category"),
    ],
)
def test_a_refused_refiling_saves_nothing(leak, body: dict[str, Any], status: int, said: str) -> None:
    client, conn, keys, enquiry_id, _ = leak
    before = _enquiry(conn, enquiry_id)
    answer = _api(client, keys["customer_care"], enquiry_id, body)
    assert answer.status_code == status and said in answer.text
    assert _enquiry(conn, enquiry_id) == before


def test_a_reader_cannot_refile(leak) -> None:
    client, conn, keys, enquiry_id, _ = leak
    before = _enquiry(conn, enquiry_id)
    assert _api(client, keys["reader"], enquiry_id, {"priority": "urgent"}).status_code == 403
    assert _enquiry(conn, enquiry_id) == before


def test_the_enquiry_page_refiles_it_and_the_desk_and_the_alerts_follow(leak) -> None:
    client, conn, keys, enquiry_id, _ = leak
    headers = {"Authorization": f"Bearer {keys['customer_care']}"}
    page = client.get(f"/care/enquiries/{enquiry_id}", headers=headers).text
    priorities = re.search(r'<select name="priority">(.*?)</select>', page, re.S)
    assert priorities is not None
    assert re.findall(r'<option value="(\w*)"', priorities[1]) == ["", "urgent", "normal", "low"]
    assert ">keep it high</option>" in priorities[1] and ">keep it customer leak</option>" in page
    shown = re.search(r'name="updated_at" value="([^"]+)"', page)
    assert shown is not None
    sent = client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "", "priority": "low", "category": "meter fault", "note": "", "updated_at": shown[1]},
        headers={**headers, **OWN},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    assert _enquiry(conn, enquiry_id)[1:3] == ("low", "meter fault")
    after = client.get(f"/care/enquiries/{enquiry_id}", headers=headers).text
    assert "priority high → low; category customer leak → meter fault" in after
    assert "<dt>Priority</dt><dd>low</dd>" in after and "meter fault, from detection" in after
    assert f"enquiry #{enquiry_id}</a>, open, low" in client.get("/", headers=headers).text


def test_the_page_says_an_unknown_category_and_keeps_the_words(leak) -> None:
    client, conn, keys, enquiry_id, _ = leak
    headers = {"Authorization": f"Bearer {keys['customer_care']}", **OWN}
    page = client.get(f"/care/enquiries/{enquiry_id}", headers=headers).text
    shown = re.search(r'name="updated_at" value="([^"]+)"', page)
    assert shown is not None
    before = _enquiry(conn, enquiry_id)
    sent = client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"category": "made up", "note": "customer says it is a meter fault", "updated_at": shown[1]},
        headers=headers,
    )
    assert sent.status_code == 422 and "Not saved: choose the new category from the list." in sent.text
    assert ">customer says it is a meter fault</textarea>" in sent.text
    assert _enquiry(conn, enquiry_id) == before


def test_detection_keeps_a_persons_category_when_the_alert_s_kind_changes(leak) -> None:
    client, conn, keys, enquiry_id, alert_id = leak
    assert _api(client, keys["customer_care"], enquiry_id, {"category": "meter fault"}).status_code == 200
    conn.execute("UPDATE alerts SET kind = 'burst' WHERE alert_id = %s", (alert_id,))  # later reads showed it better
    _, priority, category, updates = _enquiry(conn, enquiry_id)
    assert category == "meter fault" and priority == "high"
    assert updates[-1][0] == "detection" and updates[-1][1].startswith("alert is now burst, was leak")
