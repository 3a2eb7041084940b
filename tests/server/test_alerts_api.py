"""The alerts API: listing with filters and paging, dismissal by a person with a reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import alerts_to_merge, save_changes
from collector.detection.alerts import Alert, AlertKind, AlertStatus, make_alert_id
from collector.detection.lifecycle import AlertChanges, merge_alerts
from server.app import create_app
from server.auth import create_api_key

T0 = datetime(2026, 11, 20, 3, tzinfo=UTC)
PASTED = {"Sec-Fetch-Site": "none"}  # the sign-in link pasted into the address bar signs in at once


def alert(kind: AlertKind, meter_id: str | None, hours: int) -> Alert:
    detected = T0 + timedelta(hours=hours)
    return Alert(
        alert_id=make_alert_id(kind, meter_id, "D1", detected),
        kind=kind, meter_id=meter_id, dma="D1", start=detected - timedelta(hours=5), detected_at=detected,
        last_seen=detected, rate_l_h=12.5, volume_l=62.5, confidence=0.9,
        evidence=((detected - timedelta(hours=5), detected),), updated_at=detected,
    )  # fmt: skip


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"Test {role}", [role]) for role in ("customer_care", "billing", "reader")}
        with conn.transaction():
            save_changes(
                conn,
                AlertChanges(opened=[alert(AlertKind.LEAK, "M1", 0), alert(AlertKind.BURST, "M2", 1),
                                     alert(AlertKind.DMA_BURST, None, 2)]),
            )  # fmt: skip
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_alerts_are_listed_newest_first_filtered_and_paged(api):
    client, keys = api
    page = client.get("/alerts", params={"limit": 2}, headers=auth(keys["billing"])).json()
    assert [a["kind"] for a in page["items"]] == ["dma_burst", "burst"]
    rest = client.get(page["next"], headers=auth(keys["billing"])).json()
    assert [a["kind"] for a in rest["items"]] == ["leak"] and rest["next"] is None
    # a cursor that is no alert is refused, not answered with an empty page that reads as "no more"
    forged = client.get("/alerts?limit=2&cursor=no-such-alert", headers=auth(keys["billing"]))
    assert forged.status_code == 400 and forged.json()["title"] == "Bad cursor"
    leaks = client.get("/alerts", params={"kind": "leak", "status": "open"}, headers=auth(keys["billing"])).json()
    assert [(a["meter_id"], a["rate_l_h"], a["volume_l"]) for a in leaks["items"]] == [("M1", 12.5, 62.5)]


def test_customer_care_dismisses_with_a_reason_and_it_is_recorded(api):
    client, keys = api
    alert_id = make_alert_id(AlertKind.LEAK, "M1", "D1", T0)
    response = client.post(f"/alerts/{alert_id}/dismiss", json={"reason": "pool filling"},
                           headers=auth(keys["customer_care"]))  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["dismissed_by"], body["dismiss_reason"]) == (
        "dismissed", "Test customer_care", "pool filling",
    )  # fmt: skip
    again = client.post(f"/alerts/{alert_id}/dismiss", json={"reason": "twice"}, headers=auth(keys["customer_care"]))
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("key", "path", "body", "status"),
    [
        ("billing", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": "no"}, 403),
        ("reader", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": "looks fine to me"}, 403),
        ("customer_care", "/alerts/leak/NOPE/20261120T030000Z/dismiss", {"reason": "gone away"}, 404),
        ("customer_care", "/alerts/leak/M1/20261120T030000Z/dismiss", {}, 422),
        ("customer_care", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": ""}, 422),
        ("customer_care", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": "     "}, 422),
        ("customer_care", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": "pool\x00filling"}, 422),
        # a reason no one can read: invisible characters, marks only
        ("customer_care", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": "\u200b\u200b\u200b"}, 422),
        ("customer_care", "/alerts/leak/M1/20261120T030000Z/dismiss", {"reason": "- - -"}, 422),
    ],
)
def test_bad_dismissals_are_problems_and_change_nothing(api, migrated_database_url, key, path, body, status):
    client, keys = api
    response = client.post(path, json=body, headers=auth(keys[key]))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM alerts WHERE status = 'dismissed'").fetchone() == (0,)


def test_a_dismissal_made_while_a_detection_run_works_survives_the_run(api, migrated_database_url):
    """A run reads its alerts without locking them, merges, then writes: a person's dismissal that
    lands in between must not be written over by the run's older copy of the alert."""
    client, keys = api
    leak = alert(AlertKind.LEAK, "M1", 0)
    with psycopg.connect(migrated_database_url) as run:
        loaded = alerts_to_merge(run, T0 - timedelta(days=1))
        changes = merge_alerts(loaded, [leak.replace(last_seen=T0 + timedelta(hours=1))], T0 + timedelta(hours=1))
        assert [a.alert_id for a in changes.updated] == [leak.alert_id]  # the run has an update to write
        run.commit()  # (the read's transaction ends; the run's write comes later, as in a long run)
        response = client.post(f"/alerts/{leak.alert_id}/dismiss", json={"reason": "pool filling"},
                               headers=auth(keys["customer_care"]))  # fmt: skip
        assert response.status_code == 200, response.text
        with run.transaction():
            save_changes(run, changes)
        stored = run.execute(
            "SELECT status, dismissed_by, dismiss_reason FROM alerts WHERE alert_id = %s", (leak.alert_id,)
        ).fetchone()
    assert stored == ("dismissed", "Test customer_care", "pool filling")


def test_the_web_page_shows_open_alerts(api):
    client, keys = api
    page = client.get("/login", params={"key": keys["customer_care"]}, headers=PASTED, follow_redirects=True)
    assert page.status_code == 200
    assert "Active alerts, open or ongoing: " in page.text
    assert "district D1" in page.text and "about 12.5 L/h" in page.text
    # Each alert names the enquiry it raised for customer care: the burst and the district burst are urgent.
    assert page.text.count("urgent</span>") == 2 and page.text.count("enquiry #") == 3


def _alert_lines(page: str) -> list[str]:
    """The page's list items as their text reads: a meter's id is a link to its page."""
    return [re.sub(r"<[^>]+>", "", item.split("</li>")[0]) for item in page.split("<li>")[1:]]


def test_the_web_page_gives_a_flow_only_for_flow_alerts(api, migrated_database_url):
    """A tamper alarm's rate is no flow: the page says since when, not "about 0 L/h"."""
    client, keys = api
    tamper = alert(AlertKind.TAMPER, "M9", 3).replace(rate_l_h=0.0, volume_l=0.0)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.transaction():
        save_changes(conn, AlertChanges(opened=[tamper]))
    page = client.get("/login", params={"key": keys["customer_care"]}, headers=PASTED, follow_redirects=True).text
    line = next(li for li in _alert_lines(page) if "M9" in li)
    assert "M9 since 2026-11-20 01:00 UTC" in line and "L/h" not in line and "so far" not in line
    leak_line = next(li for li in _alert_lines(page) if "M1 " in li or "M1\n" in li)
    assert "about 12.5 L/h since" in leak_line and "62.5 L so far" in leak_line


def test_the_web_page_shows_open_alerts_behind_many_closed_ones(api, migrated_database_url):
    """The page took the newest 200 alerts of any status and kept the active ones: an open leak
    older than 200 resolved alerts was not shown, nor was the section."""
    client, keys = api
    closed = [
        alert(AlertKind.LOW_BATTERY, f"X{i}", 10 + i).replace(status=AlertStatus.RESOLVED, resolved_at=T0)
        for i in range(210)
    ]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.transaction():
        save_changes(conn, AlertChanges(opened=closed))
    page = client.get("/login", params={"key": keys["customer_care"]}, headers=PASTED, follow_redirects=True).text
    assert "Active alerts, open or ongoing: " in page
    assert [li for li in _alert_lines(page) if "M1 " in li or "M1\n" in li]  # the oldest, an open leak
    assert "X209" not in page  # resolved ones are not listed there
