"""A care agent dismisses a false alert from its enquiry's page (POST /care/enquiries/{id}/dismiss-alert),
the API's POST /alerts/{id}/dismiss for a browser: the reason, who (name and key id), the alert shown
dismissed and the enquiry's updates saying so, the enquiry left as it was. Before, the page showed the
alert's id alone and had no way to dismiss it (the route was a 404 page): only curl with a key could."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key, key_id_of

DETECTED = datetime(2026, 3, 2, 4, tzinfo=UTC)
OWN = {"Origin": "http://testserver"}  # what a browser sends with the page's own form
DISMISS_FORM = 'action="/care/enquiries/{}/dismiss-alert"'
REASON = "customer filled a paddling pool, confirmed by phone"


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str], int, str]]:
    """A client, a connection, keys by role, the enquiry a leak on M1 raised, and the leak's id."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {
            role: create_api_key(conn, name, [role])
            for role, name in (
                ("customer_care", "alice"),
                ("reader", "rita"),
                ("meterization", "mo"),
                ("admin", "ada"),
            )
        }
        leak = new_alert(
            AlertKind.LEAK, "M1", "D1", start=DETECTED - timedelta(hours=30), detected_at=DETECTED,
            last_seen=DETECTED, ended_at=None, rate_l_h=25.0, volume_l=750.0, confidence=0.5,
            evidence=((DETECTED - timedelta(hours=30), DETECTED),),
        ).replace(updated_at=DETECTED)  # fmt: skip
        save_changes(conn, AlertChanges(opened=[leak]))
        row = conn.execute("SELECT enquiry_id FROM enquiries WHERE alert_id = %s", (leak.alert_id,)).fetchone()
        assert row is not None
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys, row[0], leak.alert_id


def _sign_in(client: TestClient, key: str) -> None:
    client.cookies.clear()
    signed_in = client.post("/login", data={"key": key}, headers=OWN, follow_redirects=False)
    assert signed_in.status_code == 303 and SESSION_COOKIE in signed_in.headers["set-cookie"]


def _alert(conn: psycopg.Connection, alert_id: str) -> tuple[str, str | None, str | None, str | None, datetime | None]:
    row = conn.execute(
        "SELECT status, dismissed_by, dismissed_by_key_id, dismiss_reason, dismissed_at FROM alerts"
        " WHERE alert_id = %s",
        (alert_id,),
    ).fetchone()
    assert row is not None
    return row


def _enquiry(conn: psycopg.Connection, enquiry_id: int) -> tuple[str, list[str]]:
    """The enquiry's status and its updates' notes, oldest first."""
    row = conn.execute("SELECT status FROM enquiries WHERE enquiry_id = %s", (enquiry_id,)).fetchone()
    assert row is not None
    notes = conn.execute(
        "SELECT note FROM enquiry_updates WHERE enquiry_id = %s ORDER BY at, update_id", (enquiry_id,)
    ).fetchall()
    return row[0], [note for (note,) in notes]


def _dismiss(
    client: TestClient, enquiry_id: int, reason: str, headers: dict[str, str] = OWN, follow_redirects: bool = True
) -> httpx.Response:
    """The enquiry page's dismissal form, sent."""
    path = f"/care/enquiries/{enquiry_id}/dismiss-alert"
    return client.post(path, data={"reason": reason}, headers=headers, follow_redirects=follow_redirects)


def test_a_care_agent_dismisses_a_false_alert_from_its_enquiry_page(desk) -> None:
    client, conn, keys, enquiry_id, alert_id = desk
    _sign_in(client, keys["customer_care"])
    page = client.get(f"/care/enquiries/{enquiry_id}").text
    assert DISMISS_FORM.format(enquiry_id) in page
    shown = f'<span class="alarm">leak</span> {alert_id} · <span class="status">open</span>'
    assert shown in page
    sent = _dismiss(client, enquiry_id, REASON, follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"] == f"/care/enquiries/{enquiry_id}"
    status, by, by_key_id, reason, dismissed_at = _alert(conn, alert_id)
    assert (status, by, by_key_id, reason) == ("dismissed", "alice", key_id_of(keys["customer_care"]), REASON)
    assert dismissed_at is not None
    enquiry_status, notes = _enquiry(conn, enquiry_id)
    assert enquiry_status == "open"  # a person closes it once the customer knows
    assert notes[-1] == f"alert dismissed: {REASON}"
    shown = client.get(f"/care/enquiries/{enquiry_id}").text
    assert f"{dismissed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC by alice: <q>{REASON}</q>" in shown
    assert DISMISS_FORM.format(enquiry_id) not in shown  # dismissed: no form to dismiss it again
    assert f"alert dismissed: {REASON}" in shown


def test_the_same_dismissal_sent_twice_is_written_once_and_says_who_dismissed_it(desk) -> None:
    client, conn, keys, enquiry_id, alert_id = desk
    _sign_in(client, keys["customer_care"])
    assert _dismiss(client, enquiry_id, REASON, follow_redirects=False).status_code == 303
    first = _alert(conn, alert_id)
    notes = _enquiry(conn, enquiry_id)[1]
    again = _dismiss(client, enquiry_id, "a second click")
    assert again.status_code == 409
    assert "Not dismissed again: the alert was dismissed already" in again.text
    assert f"by alice (“{REASON}”). Nothing was written." in again.text
    assert _alert(conn, alert_id) == first and _enquiry(conn, enquiry_id)[1] == notes


@pytest.mark.parametrize("role", ["meterization", "admin"])
def test_the_other_keys_that_dismiss_alerts_in_the_api_dismiss_them_here(desk, role: str) -> None:
    client, conn, keys, enquiry_id, alert_id = desk
    _sign_in(client, keys[role])
    assert DISMISS_FORM.format(enquiry_id) in client.get(f"/care/enquiries/{enquiry_id}").text
    assert _dismiss(client, enquiry_id, REASON, follow_redirects=False).status_code == 303
    assert _alert(conn, alert_id)[0] == "dismissed"


def test_a_reader_sees_the_alert_without_the_form_and_its_post_is_refused(desk) -> None:
    client, conn, keys, enquiry_id, alert_id = desk
    _sign_in(client, keys["reader"])
    page = client.get(f"/care/enquiries/{enquiry_id}").text
    assert '<span class="status">open</span>' in page and DISMISS_FORM.format(enquiry_id) not in page
    refused = _dismiss(client, enquiry_id, REASON)
    assert refused.status_code == 403 and "Not dismissed: " in refused.text
    assert _alert(conn, alert_id)[0] == "open"


def test_without_a_key_the_post_is_the_sign_in_form(desk) -> None:
    client, conn, _, enquiry_id, alert_id = desk
    client.cookies.clear()
    refused = _dismiss(client, enquiry_id, REASON)
    assert refused.status_code == 401 and 'action="/login"' in refused.text
    assert _alert(conn, alert_id)[0] == "open"


@pytest.mark.parametrize(
    "headers", [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}], ids=["fetch-site", "origin"]
)
def test_another_sites_form_dismisses_nothing(desk, headers: dict[str, str]) -> None:
    client, conn, keys, enquiry_id, alert_id = desk
    _sign_in(client, keys["customer_care"])
    refused = _dismiss(client, enquiry_id, REASON, headers=headers)
    assert refused.status_code == 403 and "sent from another site" in refused.text
    assert REASON not in refused.text  # nothing of that form is shown back
    assert _alert(conn, alert_id)[0] == "open"


@pytest.mark.parametrize(
    "reason", ["", "   ", "..", "\u200b\u200b\u200b", "\u3164\u3164\u3164", "\u115f\u1160\uffa0", "a\x00bcd", "x" * 501]
)
def test_a_reason_that_says_nothing_is_refused_and_the_words_are_kept(desk, reason: str) -> None:
    client, conn, keys, enquiry_id, alert_id = desk
    _sign_in(client, keys["customer_care"])
    notes = _enquiry(conn, enquiry_id)[1]
    refused = _dismiss(client, enquiry_id, reason)
    assert refused.status_code == 422 and "Not dismissed: a reason is 3 to 500 characters" in refused.text
    if reason.strip() and "\x00" not in reason:
        assert f">{reason}</textarea>" in refused.text
    assert _alert(conn, alert_id)[0] == "open" and _enquiry(conn, enquiry_id)[1] == notes


def test_an_enquiry_no_alert_raised_has_none_to_dismiss(desk) -> None:
    client, conn, keys, _, _ = desk
    row = conn.execute(
        "INSERT INTO enquiries (kind, category, source, subject) VALUES ('enquiry', 'billing', 'staff', "
        "'customer asks about the bill') RETURNING enquiry_id"
    ).fetchone()
    assert row is not None
    _sign_in(client, keys["customer_care"])
    assert "dismiss-alert" not in client.get(f"/care/enquiries/{row[0]}").text
    refused = _dismiss(client, row[0], REASON)
    assert refused.status_code == 409 and f"enquiry #{row[0]} was not raised by an alert" in refused.text


@pytest.mark.parametrize("enquiry_id", ["999999", "abc", "0"])
def test_an_unknown_enquiry_is_a_404_that_says_nothing_was_saved(desk, enquiry_id: str) -> None:
    client, _, keys, _, _ = desk
    _sign_in(client, keys["customer_care"])
    refused = client.post(f"/care/enquiries/{enquiry_id}/dismiss-alert", data={"reason": REASON}, headers=OWN)
    assert refused.status_code == 404 and f"There is no enquiry {enquiry_id}: nothing was saved." in refused.text


def test_another_sites_form_for_an_unknown_enquiry_says_why_it_was_refused(desk) -> None:
    """Found by tests/server/test_web_fuzz.py: the refusal was put where only a known enquiry's page shows it."""
    client, _, keys, _, _ = desk
    _sign_in(client, keys["customer_care"])
    refused = _dismiss(client, 999999, REASON, headers={"Sec-Fetch-Site": "cross-site"})
    assert (
        refused.status_code == 403
        and '<p class="error">Not dismissed: that form was sent from another site' in refused.text
    )


def test_a_resolved_alert_is_still_dismissible_and_the_form_says_what_that_changes(desk) -> None:
    """A leak that ended is resolved, and billing's leak adjustment still counts its volume (only
    dismissed alerts are left out): a false one must still be dismissible. The form said "Dismissing
    closes the alert", which a resolved alert is already."""
    client, conn, keys, enquiry_id, alert_id = desk
    conn.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = %s WHERE alert_id = %s",
        (DETECTED + timedelta(hours=2), alert_id),
    )
    _sign_in(client, keys["customer_care"])
    page = client.get(f"/care/enquiries/{enquiry_id}").text
    form = page.split(DISMISS_FORM.format(enquiry_id))[1].split("</form>")[0]
    assert "The alert has ended (resolved), but its water still counts for the customer's bill" in form
    assert "leaves it out of that" in form and "closes the alert" not in form
    assert _dismiss(client, enquiry_id, REASON, follow_redirects=False).status_code == 303
    assert _alert(conn, alert_id)[:2] == ("dismissed", "alice")


def test_an_active_alert_s_form_says_dismissing_closes_it(desk) -> None:
    client, _, keys, enquiry_id, _ = desk
    _sign_in(client, keys["customer_care"])
    form = client.get(f"/care/enquiries/{enquiry_id}").text.split(DISMISS_FORM.format(enquiry_id))[1]
    assert "Dismissing closes the alert as needing no action" in form.split("</form>")[0]
    assert "has ended" not in form.split("</form>")[0]
