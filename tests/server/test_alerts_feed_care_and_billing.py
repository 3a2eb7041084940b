"""Alerts feed customer care (an enquiry per alert, linked to the customer) and billing (leaks on determinants)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.detection.alerts import AlertKind
from collector.detection_job import DetectionJobConfig, run_detection_once
from server.app import create_app
from server.auth import create_api_key
from simulators.meter_model import MeterModel
from tests.collector.test_detection_job import LEAK_START, LEAKY, START, fleet, store_hours

CONFIG = DetectionJobConfig(history_days=9)
FIRST_RUN = START + timedelta(days=9)


def register_leaky_household(conn: psycopg.Connection, meters: list[MeterModel]) -> None:
    """``meters`` registered in D1, the leaky one (LEAKY) fitted at SP-7 on account ACC-7."""
    conn.cursor().executemany(
        "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
        [(m.meter_id,) for m in meters],
    )
    conn.execute("INSERT INTO accounts (account_id, name) VALUES ('ACC-7', 'Household seven')")
    conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-7', 'D1')")
    conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('ACC-7', 'SP-7', %s)",
        (START - timedelta(days=30),),
    )
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-7', %s, %s)",
        (LEAKY, START - timedelta(days=1)),
    )


@pytest.fixture
def leaky_customer(migrated_database_url: str) -> Iterator[tuple[str, TestClient, dict[str, str]]]:
    """Twenty households in D1, the leaky one on account ACC-7; nine days of hourly reads."""
    url = migrated_database_url
    meters = fleet()
    with psycopg.connect(url, autocommit=True) as conn:
        register_leaky_household(conn, meters)
        keys = {role: create_api_key(conn, role, [role]) for role in ("customer_care", "billing")}
    store_hours(url, meters, 0, 9 * 24)
    with TestClient(create_app(url)) as client:
        yield url, client, keys


def _enquiries(client: TestClient, key: str, **query: str) -> list[dict]:
    response = client.get("/enquiries", params=query, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_leak_raises_one_enquiry_for_its_customer_and_later_runs_add_none(leaky_customer) -> None:
    url, client, keys = leaky_customer
    care = keys["customer_care"]
    assert _enquiries(client, care) == []
    with psycopg.connect(url) as conn:
        opened = run_detection_once(conn, FIRST_RUN, CONFIG).opened
    leak = next(a for a in opened if a.kind is AlertKind.LEAK and a.meter_id == LEAKY)

    raised = _enquiries(client, care, source="detection")
    assert len(raised) == len(opened)  # every alert, exactly once
    (enquiry,) = [e for e in raised if e["alert_id"] == leak.alert_id]
    assert enquiry["kind"] == "service_request" and enquiry["category"] == "customer leak"
    assert enquiry["priority"] == "high" and enquiry["status"] == "open"
    assert (enquiry["account_id"], enquiry["service_point_id"], enquiry["meter_id"]) == ("ACC-7", "SP-7", LEAKY)
    assert LEAKY in enquiry["subject"] and "L/h since" in enquiry["subject"]
    assert abs(leak.start - LEAK_START) <= timedelta(hours=2)

    store_hours(url, fleet(), 9 * 24, 9 * 24 + 2)  # the leak goes on: the alert is updated, not re-raised
    with psycopg.connect(url) as conn:
        run_detection_once(conn, FIRST_RUN + timedelta(hours=1), CONFIG)
    again = [e for e in _enquiries(client, care, source="detection") if e["alert_id"] == leak.alert_id]
    assert [e["enquiry_id"] for e in again] == [enquiry["enquiry_id"]]
    assert _enquiries(client, care, account="ACC-7") == again


def test_dismissing_the_alert_is_written_on_its_enquiry(leaky_customer) -> None:
    url, client, keys = leaky_customer
    with psycopg.connect(url) as conn:
        leak = next(a for a in run_detection_once(conn, FIRST_RUN, CONFIG).opened if a.meter_id == LEAKY)
    care = {"Authorization": f"Bearer {keys['customer_care']}"}
    dismissed = client.post(f"/alerts/{leak.alert_id}/dismiss", json={"reason": "filling a pool"}, headers=care)
    assert dismissed.status_code == 200, dismissed.text
    (listed,) = [e for e in _enquiries(client, keys["customer_care"]) if e["alert_id"] == leak.alert_id]
    detail = client.get(f"/enquiries/{listed['enquiry_id']}", headers=care).json()
    notes = [(u["by"], u["note"]) for u in detail["updates"]]
    assert notes[0][0] == "detection" and leak.alert_id in notes[0][1]
    assert notes[-1] == ("customer_care", "alert dismissed: filling a pool")
    assert detail["status"] == "open"  # a person closes the enquiry, not the alert


def test_enquiries_need_a_customer_care_key_and_unknown_ones_are_404(leaky_customer) -> None:
    _, client, keys = leaky_customer
    assert client.get("/enquiries").status_code == 401
    assert client.get("/enquiries", headers={"Authorization": f"Bearer {keys['billing']}"}).status_code == 403
    missing = client.get("/enquiries/999999", headers={"Authorization": f"Bearer {keys['customer_care']}"})
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    bad = client.get("/enquiries?status=lost", headers={"Authorization": f"Bearer {keys['customer_care']}"})
    assert bad.status_code == 422
    # A forged cursor beyond any enquiry id (a bigint) is refused, not a 500.
    forged = client.get(
        "/enquiries?cursor=99999999999999999999", headers={"Authorization": f"Bearer {keys['customer_care']}"}
    )
    assert forged.status_code == 422 and forged.headers["content-type"] == "application/problem+json"


def test_the_leak_is_on_the_customer_s_determinant_for_billing_s_adjustment(leaky_customer) -> None:
    url, client, keys = leaky_customer
    with psycopg.connect(url) as conn:
        leak = next(a for a in run_detection_once(conn, FIRST_RUN, CONFIG).opened if a.meter_id == LEAKY)
    billing = {"Authorization": f"Bearer {keys['billing']}"}
    period = f"{START.isoformat()}/{(START + timedelta(days=30)).isoformat()}".replace("+00:00", "Z")
    body = client.get("/billing/determinants", params={"period": period, "account": "ACC-7"}, headers=billing).json()
    ((line,),) = [d["lines"] for d in body["items"]]
    (on_line,) = line["leaks"]
    assert on_line["alert_id"] == leak.alert_id and on_line["kind"] == "leak"
    hours = (leak.last_seen - leak.start).total_seconds() / 3600
    assert Decimal(on_line["estimated_volume_m3"]) == round(Decimal(str(leak.rate_l_h)) / 1000 * Decimal(str(hours)), 3)
    assert isinstance(on_line["estimated_volume_m3"], str)  # exact decimal, like every volume
    text = client.get("/billing/determinants", params={"period": period, "format": "csv"}, headers=billing).text
    (row,) = [r for r in csv.DictReader(io.StringIO(text)) if r["account_id"] == "ACC-7"]
    assert Decimal(row["leak_estimated_m3"]) == Decimal(on_line["estimated_volume_m3"])
    # Dismissed (e.g. a pool being filled): no longer offered for adjustment.
    client.post(
        f"/alerts/{leak.alert_id}/dismiss",
        json={"reason": "filling a pool"},
        headers={"Authorization": f"Bearer {keys['customer_care']}"},
    )
    again = client.get("/billing/determinants", params={"period": period, "account": "ACC-7"}, headers=billing).json()
    assert again["items"][0]["lines"][0]["leaks"] == []


def test_a_dismissed_leak_that_runs_on_is_not_raised_again_when_the_window_has_passed_its_dismissal(
    leaky_customer,
) -> None:
    """A dismissed alert was loaded only while its last_seen (frozen at the dismissal) was in the
    run's window: once the window had passed it, the leak running on opened a new alert and a new
    enquiry. Runs now follow a dismissed alert's episode."""
    url, client, keys = leaky_customer
    with psycopg.connect(url) as conn:
        opened = run_detection_once(conn, FIRST_RUN, CONFIG).opened
    leak = next(a for a in opened if a.kind is AlertKind.LEAK and a.meter_id == LEAKY)
    dismissed = client.post(f"/alerts/{leak.alert_id}/dismiss", json={"reason": "pool filling, known"},
                            headers={"Authorization": f"Bearer {keys['customer_care']}"})  # fmt: skip
    assert dismissed.status_code == 200, dismissed.text
    store_hours(url, fleet(), 9 * 24, 20 * 24)  # eleven days more: the window is nine
    with psycopg.connect(url) as conn:
        for day in range(1, 12):
            run_detection_once(conn, FIRST_RUN + timedelta(days=day), CONFIG)
        leaks = conn.execute(
            "SELECT alert_id, status, last_seen FROM alerts WHERE kind = 'leak' AND meter_id = %s", (LEAKY,)
        ).fetchall()
    assert [(alert_id, status) for alert_id, status, _ in leaks] == [(leak.alert_id, "dismissed")]
    assert leaks[0][2] >= FIRST_RUN + timedelta(days=10)  # followed, not frozen at the dismissal
    assert [e["alert_id"] for e in _enquiries(client, keys["customer_care"], account="ACC-7")] == [leak.alert_id]


def test_an_alert_stored_already_resolved_tells_its_enquiry(leaky_customer) -> None:
    """An episode that began and ended between two runs (after an outage, a late spool) is stored
    resolved: its enquiry was raised but never told the flow had stopped."""
    from collector.alert_store import save_changes
    from collector.detection.alerts import Alert, AlertStatus, make_alert_id
    from collector.detection.lifecycle import AlertChanges

    url, client, keys = leaky_customer
    start = FIRST_RUN - timedelta(hours=20)
    burst = Alert(
        alert_id=make_alert_id(AlertKind.BURST, LEAKY, "D1", start + timedelta(hours=1)), kind=AlertKind.BURST,
        meter_id=LEAKY, dma="D1", start=start, detected_at=start + timedelta(hours=1),
        last_seen=start + timedelta(hours=3), ended_at=start + timedelta(hours=3), rate_l_h=900.0, volume_l=2700.0,
        confidence=0.96, evidence=((start, start + timedelta(hours=1)),), status=AlertStatus.RESOLVED,
        resolved_at=start + timedelta(hours=3), updated_at=FIRST_RUN,
    )  # fmt: skip
    with psycopg.connect(url) as conn, conn.transaction():
        save_changes(conn, AlertChanges(opened=[burst]))
    (enquiry,) = [e for e in _enquiries(client, keys["customer_care"]) if e["alert_id"] == burst.alert_id]
    one = client.get(
        f"/enquiries/{enquiry['enquiry_id']}", headers={"Authorization": f"Bearer {keys['customer_care']}"}
    )
    notes = [u["note"] for u in one.json()["updates"]]
    assert notes[0].startswith("raised by alert") and notes[1:] == [
        "alert resolved: the flow stopped (2700 L lost in all)"
    ]


def test_a_leak_running_past_the_window_keeps_its_start_and_billing_its_whole_volume(leaky_customer) -> None:
    url, _, _ = leaky_customer
    with psycopg.connect(url) as conn:
        leak = next(a for a in run_detection_once(conn, FIRST_RUN, CONFIG).opened if a.meter_id == LEAKY)
    store_hours(url, fleet(), 9 * 24, 20 * 24)  # eleven days more: the window (nine) passes the leak's start
    with psycopg.connect(url) as conn:
        for day in range(1, 12):
            run_detection_once(conn, FIRST_RUN + timedelta(days=day), CONFIG)
        row = conn.execute(
            "SELECT start, last_seen, rate_l_h, volume_l FROM alerts WHERE alert_id = %s", (leak.alert_id,)
        ).fetchone()
    assert row is not None
    start, last_seen, rate, volume = row
    assert abs(start - leak.start) <= timedelta(hours=1) and abs(start - LEAK_START) <= timedelta(hours=2)
    assert volume == pytest.approx(rate * (last_seen - start).total_seconds() / 3600, rel=1e-6)
