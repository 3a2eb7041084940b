"""Every change a key makes is recorded with the key's id beside its name: two keys may carry one
name (a rotated key keeps its person's name), and a leaked key's changes must be told from the
rightful key's (server migration 0047)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key, key_id_of

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Office:
    client: TestClient
    conn: psycopg.Connection
    clerks: list[str]  # three keys, all named "billing clerk": the old one, its rotation, a leak
    care: list[str]  # two keys, both named "care desk"


@pytest.fixture(scope="module")
def office() -> Iterator[Office]:
    from collector.migrate import migrate
    from tests.services import admin_url, create_database, drop_database

    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            # a meter that passes 500 m³/h: the test's reads climb 100 m³ an hour, and a newest read
            # further above the one before than the meter passes is refused (collector.vee.register_order)
            conn.execute("INSERT INTO meters (meter_id, max_flow_m3h) VALUES ('WM-1', 500)")
            clerks = [create_api_key(conn, "billing clerk", ["billing"]) for _ in range(3)]
            care = [create_api_key(conn, "care desk", ["customer_care"]) for _ in range(2)]
            with TestClient(create_app(url)) as client:
                yield Office(client, conn, clerks, care)
    finally:
        drop_database(server, url)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


_instants = count()


@settings(max_examples=20)
@given(editors=st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=5))
def test_each_version_of_a_reading_names_the_key_that_made_it(office: Office, editors: list[int]) -> None:
    """Before, the history said "billing clerk" for every one of these keys' corrections."""
    hour = next(_instants)
    ts = T0 + timedelta(hours=hour)
    # each example's read 100 m³ above the last one's, its corrections too: in order with each other
    office.conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('WM-1', %s, %s)", (ts, 100 * hour + 1.5)
    )
    for n, editor in enumerate(editors):
        body = {"volume_m3": f"{100 * hour + n + 2}.5", "reason": "meter photo shows a different register"}
        response = office.client.put(
            f"/meters/WM-1/readings/{ts.isoformat()}", json=body, headers=_bearer(office.clerks[editor])
        )
        assert response.status_code == 200, response.text
        assert response.json()["quality_by"] == "billing clerk"
        assert response.json()["quality_by_key_id"] == key_id_of(office.clerks[editor])
    versions = office.client.get(f"/meters/WM-1/readings/{ts.isoformat()}/history", headers=_bearer(office.care[0]))
    assert versions.status_code == 200, versions.text
    ids = [key_id_of(office.clerks[e]) for e in editors]
    assert [v["superseded_by_key_id"] for v in versions.json()] == ids
    assert [v["quality_by_key_id"] for v in versions.json()] == [None, *ids[:-1]]  # the first arrived: no key
    assert all(v["superseded_by"] == "billing clerk" for v in versions.json())


def test_a_supplied_reading_names_its_key(office: Office) -> None:
    ts = T0 - timedelta(days=1)
    body = {"ts": ts.isoformat(), "volume_m3": "0.5", "reason": "read on a site visit"}
    response = office.client.post("/meters/WM-1/readings", json=body, headers=_bearer(office.clerks[1]))
    assert response.status_code == 201, response.text
    assert response.json()["quality_by_key_id"] == key_id_of(office.clerks[1])


def _leak(meter_id: str):
    return new_alert(
        AlertKind.LEAK, meter_id, "D1", start=T0, detected_at=T0, last_seen=T0 + timedelta(hours=6), ended_at=None,
        rate_l_h=20.0, volume_l=120.0, confidence=0.8, evidence=((T0, T0 + timedelta(hours=1)),),
    ).replace(updated_at=T0)  # fmt: skip


def _enquiry_of(conn: psycopg.Connection, where: str, value: str) -> int:
    row = conn.execute(f"SELECT enquiry_id FROM enquiries WHERE {where}", (value,)).fetchone()
    assert row is not None
    return row[0]


def test_a_dismissal_and_its_note_on_the_enquiry_it_leaves_open_name_the_key(office: Office) -> None:
    """The dismissal names the key, and so does its note on the alert's enquiry (``alert dismissed:
    …``), which stays open for a person to close (this test's name said the dismissal closed it)."""
    save_changes(office.conn, AlertChanges(opened=[_leak("M-dismissed")]))
    alert_id = _leak("M-dismissed").alert_id
    desk = office.care[1]
    dismissed = office.client.post(
        f"/alerts/{alert_id}/dismiss", json={"reason": "the customer filled the pool"}, headers=_bearer(desk)
    )
    assert dismissed.status_code == 200, dismissed.text
    assert dismissed.json()["dismissed_by"] == "care desk"
    assert dismissed.json()["dismissed_by_key_id"] == key_id_of(desk)
    listed = office.client.get("/alerts", params={"meter_id": "M-dismissed"}, headers=_bearer(office.care[0]))
    assert listed.json()["items"][0]["dismissed_by_key_id"] == key_id_of(desk)
    enquiry_id = _enquiry_of(office.conn, "alert_id = %s", alert_id)
    enquiry = office.client.get(f"/enquiries/{enquiry_id}", headers=_bearer(office.care[0])).json()
    assert enquiry["status"] == "open", enquiry
    updates = enquiry["updates"]
    by_desk = [u for u in updates if u["by"] == "care desk"]
    assert by_desk and all(u["by_key_id"] == key_id_of(desk) for u in by_desk), updates
    assert all(u["by_key_id"] is None for u in updates if u["by"] != "care desk"), updates


def test_an_enquiry_update_names_the_key(office: Office) -> None:
    save_changes(office.conn, AlertChanges(opened=[_leak("M-worked")]))
    enquiry_id = _enquiry_of(office.conn, "meter_id = %s", "M-worked")
    for key in office.care:
        body = {"note": "called the customer"}
        response = office.client.post(f"/enquiries/{enquiry_id}/updates", json=body, headers=_bearer(key))
        assert response.status_code == 200, response.text
    updates = [u for u in response.json()["updates"] if u["by"] == "care desk"]
    assert [u["by_key_id"] for u in updates] == [key_id_of(key) for key in office.care]
    raised = [u for u in response.json()["updates"] if u["by"] != "care desk"]
    assert all(u["by_key_id"] is None for u in raised)  # detection's note raising it: no key


def test_an_enquiry_update_from_the_web_form_names_the_key(office: Office) -> None:
    """The page's form (server.web.enquiries) is the API's update for a browser: before, its updates
    had the name "care desk" and no key id, so the two desk keys' notes could not be told apart."""
    save_changes(office.conn, AlertChanges(opened=[_leak("M-worked-on-the-page")]))
    enquiry_id = _enquiry_of(office.conn, "meter_id = %s", "M-worked-on-the-page")
    try:
        for key in office.care:
            office.client.cookies.clear()
            signed_in = office.client.post(
                "/login", data={"key": key}, headers={"Origin": "http://testserver"}, follow_redirects=False
            )
            assert signed_in.status_code == 303, signed_in.text
            page = office.client.get(f"/care/enquiries/{enquiry_id}").text
            shown = re.search(r'<input type="hidden" name="updated_at" value="([^"]+)">', page)
            assert shown is not None, page  # the version the form carries (a change since is refused)
            sent = office.client.post(
                f"/care/enquiries/{enquiry_id}",
                data={"note": "called the customer", "updated_at": shown.group(1)},
                headers={"Origin": "http://testserver"},
                follow_redirects=False,
            )
            assert sent.status_code == 303, sent.text
    finally:
        office.client.cookies.clear()
    rows = office.conn.execute(
        "SELECT by_key_id FROM enquiry_updates WHERE enquiry_id = %s AND by = 'care desk' ORDER BY update_id",
        (enquiry_id,),
    ).fetchall()
    assert [row[0] for row in rows] == [key_id_of(key) for key in office.care]


def test_an_open311_request_s_first_update_names_the_key(office: Office) -> None:
    """Before, the enquiry a key raised through Open311 had its first update under "care desk" alone."""
    desk = office.care[1]
    body = {"service_code": "billing_query", "description": "Bill doubled", "attribute": {"account": "A-9"}}
    answer = office.client.post("/open311/v2/requests.json", json=body, headers=_bearer(desk))
    assert answer.status_code == 200, answer.text
    enquiry_id = int(answer.json()[0]["service_request_id"])
    rows = office.conn.execute(
        "SELECT by, by_key_id FROM enquiry_updates WHERE enquiry_id = %s", (enquiry_id,)
    ).fetchall()
    assert rows == [("care desk", key_id_of(desk))]


def test_a_note_on_a_closed_duplicate_reaches_the_kept_enquiry_with_the_key(office: Office) -> None:
    """A burst on a leak being worked is the leak's enquiry's work (server migration 0045); a note on
    the burst's closed duplicate is written on the kept enquiry too. Before, that copy had no key id."""
    leak = _leak("M-grew")
    save_changes(office.conn, AlertChanges(opened=[leak]))
    kept = _enquiry_of(office.conn, "alert_id = %s", leak.alert_id)
    office.conn.execute("UPDATE enquiries SET status = 'in_progress' WHERE enquiry_id = %s", (kept,))
    grew = T0 + timedelta(days=1)
    burst = new_alert(
        AlertKind.BURST, "M-grew", "D1", start=grew - timedelta(hours=1), detected_at=grew, last_seen=grew,
        ended_at=None, rate_l_h=600.0, volume_l=600.0, confidence=0.9, evidence=((grew, grew),),
    ).replace(updated_at=grew)  # fmt: skip
    save_changes(office.conn, AlertChanges(opened=[burst]))
    duplicate = _enquiry_of(office.conn, "alert_id = %s", burst.alert_id)
    desk = office.care[0]
    body = {"note": "customer says the pipe burst"}
    response = office.client.post(f"/enquiries/{duplicate}/updates", json=body, headers=_bearer(desk))
    assert response.status_code == 200, response.text
    forwarded = office.conn.execute(
        "SELECT by, by_key_id FROM enquiry_updates WHERE enquiry_id = %s AND note LIKE %s",
        (kept, f"on enquiry {duplicate} %: customer says the pipe burst"),
    ).fetchall()
    assert forwarded == [("care desk", key_id_of(desk))]


def test_billing_s_reads_name_the_key_of_a_correction(office: Office) -> None:
    """The reads billing pulls said who corrected one by name alone ("billing clerk", whichever of
    the three keys it was), so the billing system, the one that bills on it, could not tell a leaked
    key's correction from the clerk's; the JSON now carries ``quality_by_key_id`` as the meters API does."""
    ts = T0 - timedelta(days=3)
    office.conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-KEY') ON CONFLICT DO NOTHING")
    office.conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-KEY', 'Ada') ON CONFLICT DO NOTHING")
    office.conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-KEY', 'WM-1', %s)",
        (ts - timedelta(days=1),),
    )
    office.conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('A-KEY', 'SP-KEY', %s)",
        (ts - timedelta(days=1),),
    )
    office.conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('WM-1', %s, 1.5), ('WM-1', %s, 1.6)",
        (ts, ts + timedelta(hours=1)),
    )
    body = {"volume_m3": "1.55", "reason": "meter photo shows a different register"}
    leaked = office.clerks[2]
    assert office.client.put(f"/meters/WM-1/readings/{ts.isoformat()}", json=body, headers=_bearer(leaked)).is_success
    span = {"account": "A-KEY", "from": ts.isoformat(), "to": (ts + timedelta(hours=2)).isoformat()}
    pulled = office.client.get("/billing/reads", params=span, headers=_bearer(office.clerks[0]))
    assert pulled.status_code == 200, pulled.text
    items = pulled.json()["items"]
    assert [(i["quality"], i["quality_by"], i["quality_by_key_id"]) for i in items] == [
        ("edited", "billing clerk", key_id_of(leaked)),
        ("actual", None, None),
    ]


def test_billing_s_reads_csv_names_the_key_of_a_correction_as_the_json_does(office: Office) -> None:
    """The CSV of the same reads had ``quality_by`` alone ("billing clerk"), where the JSON has the key's
    id too: a billing system importing the CSV could not tell the leaked key's correction from the
    clerk's. Its last column is now ``quality_by_key_id``, after the columns it had, so an import
    reading them by position reads on."""
    ts = T0 - timedelta(days=5)
    office.conn.execute("INSERT INTO meters (meter_id) VALUES ('WM-CSV')")
    office.conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-CSV')")
    office.conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-CSV', 'Bo')")
    office.conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-CSV', 'WM-CSV', %s)",
        (ts - timedelta(days=1),),
    )
    office.conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('A-CSV', 'SP-CSV', %s)",
        (ts - timedelta(days=1),),
    )
    office.conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('WM-CSV', %s, 2.5), ('WM-CSV', %s, 2.6)",
        (ts, ts + timedelta(hours=1)),
    )
    leaked, rightful = office.clerks[2], office.clerks[1]
    for key, at, volume in ((leaked, ts, "2.45"), (rightful, ts + timedelta(hours=1), "2.65")):
        body = {"volume_m3": volume, "reason": "meter photo shows a different register"}
        edited = office.client.put(f"/meters/WM-CSV/readings/{at.isoformat()}", json=body, headers=_bearer(key))
        assert edited.is_success, edited.text
    span = {"account": "A-CSV", "from": ts.isoformat(), "to": (ts + timedelta(hours=2)).isoformat(), "format": "csv"}
    pulled = office.client.get("/billing/reads", params=span, headers=_bearer(office.clerks[0]))
    assert pulled.status_code == 200, pulled.text
    header, *rows = [line.split(",") for line in pulled.text.strip().split("\r\n")]
    assert header[-1] == "quality_by_key_id"
    named = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["volume_m3"], r["quality_by"], r["quality_by_key_id"]) for r in named] == [
        ("2.45", "billing clerk", key_id_of(leaked)),
        ("2.65", "billing clerk", key_id_of(rightful)),
    ]
    as_json = office.client.get("/billing/reads", params={**span, "format": "json"}, headers=_bearer(office.clerks[0]))
    assert [i["quality_by_key_id"] for i in as_json.json()["items"]] == [r["quality_by_key_id"] for r in named]
