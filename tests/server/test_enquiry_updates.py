"""Customer care works an enquiry: POST /enquiries/{id}/updates. Before, nothing could change an
enquiry (only GET existed): every enquiry detection raised stayed open for ever, and migration
0033's reopening of a closed enquiry could not happen."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import save_changes
from collector.detection.alerts import Alert, AlertKind, AlertStatus
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key

DETECTED = datetime(2026, 3, 2, 4, tzinfo=UTC)
STATUSES = ("open", "in_progress", "escalated", "closed")


def _burst(meter_id: str) -> Alert:
    return new_alert(
        AlertKind.BURST, meter_id, "D1", start=DETECTED - timedelta(hours=2), detected_at=DETECTED,
        last_seen=DETECTED, ended_at=None, rate_l_h=186.0, volume_l=372.0, confidence=0.8,
        evidence=((DETECTED - timedelta(hours=1), DETECTED),),
    ).replace(updated_at=DETECTED)  # fmt: skip


@pytest.fixture
def care(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], int]]:
    """The API, keys by role, and the enquiry a burst on M1 raised."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {
            role: {"Authorization": f"Bearer {create_api_key(conn, name, [role])}"}
            for role, name in (("customer_care", "alice"), ("reader", "rita"), ("meterization", "mo"))
        }
        save_changes(conn, AlertChanges(opened=[_burst("M1")]))
        row = conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = 'M1'").fetchone()
    assert row is not None
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, keys, row[0]


def _post(client: TestClient, enquiry_id: int, body: Any, headers: dict[str, str]) -> Any:
    return client.post(f"/enquiries/{enquiry_id}/updates", json=body, headers=headers)


def test_a_person_works_an_enquiry_to_closed_and_each_step_says_who_when_and_what(care) -> None:
    client, keys, enquiry_id = care
    alice = keys["customer_care"]
    before = datetime.now(UTC)
    taken = _post(client, enquiry_id, {"status": "in_progress", "note": "called the customer"}, alice)
    assert taken.status_code == 200, taken.text
    assert (taken.json()["status"], taken.json()["closed_at"]) == ("in_progress", None)
    closed = _post(client, enquiry_id, {"status": "closed", "note": "plumber fixed the pipe"}, alice)
    assert closed.status_code == 200, closed.text
    closed_at = closed.json()["closed_at"]
    assert closed.json()["status"] == "closed" and closed_at.endswith("Z")
    noted = _post(client, enquiry_id, {"note": "customer confirmed by email"}, alice)
    assert noted.status_code == 200, noted.text
    read = client.get(f"/enquiries/{enquiry_id}", headers=keys["reader"]).json()
    assert "open311" not in read  # a reader's key gets no open311 field
    assert {**read, "open311": None} == noted.json()  # care's: null, for an enquiry detection raised
    assert (read["status"], read["closed_at"]) == ("closed", closed_at)  # a note leaves when it was closed
    mine = [(u["by"], u["note"]) for u in read["updates"][-3:]]
    assert mine == [
        ("alice", "status open → in_progress; called the customer"),
        ("alice", "status in_progress → closed; plumber fixed the pipe"),
        ("alice", "customer confirmed by email"),
    ]
    for update in read["updates"][-3:]:
        assert update["at"].endswith("Z") and datetime.fromisoformat(update["at"]) >= before - timedelta(minutes=5)


# Every move, and whether a person may make it: a closed enquiry reopens as open or in_progress, not
# straight into escalation; an escalated one goes back to be worked, not into the queue; no status
# becomes itself.
REFUSED = {("closed", "escalated"), ("escalated", "open")} | {(s, s) for s in STATUSES}


@pytest.mark.parametrize("current", STATUSES)
def test_the_workflow_allows_its_moves_and_refuses_the_others_with_409_changing_nothing(
    care, migrated_database_url: str, current: str
) -> None:
    client, keys, enquiry_id = care
    for new in STATUSES:
        with psycopg.connect(migrated_database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE enquiries SET status = %s, closed_at = CASE WHEN %s = 'closed' THEN now() END "
                "WHERE enquiry_id = %s",
                (current, current, enquiry_id),
            )
            (updates_before,) = conn.execute("SELECT count(*) FROM enquiry_updates").fetchone() or (0,)
        answer = _post(client, enquiry_id, {"status": new}, keys["customer_care"])
        with psycopg.connect(migrated_database_url) as conn:
            stored = conn.execute("SELECT status FROM enquiries WHERE enquiry_id = %s", (enquiry_id,)).fetchone()
            (updates_after,) = conn.execute("SELECT count(*) FROM enquiry_updates").fetchone() or (0,)
        if (current, new) in REFUSED:
            assert answer.status_code == 409, (current, new, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert (stored, updates_after) == ((current,), updates_before)
        else:
            assert answer.status_code == 200, (current, new, answer.text)
            assert (stored, updates_after) == ((new,), updates_before + 1)


@pytest.mark.parametrize(
    "body",
    [{}, {"status": None, "note": None}, {"status": "done"}, {"note": "   "}, {"note": "!!!"}, {"note": "ok\x00k"},
     {"note": "x" * 2001}, {"status": "closed", "note": "no"}, [], "closed"],
)  # fmt: skip
def test_a_body_saying_nothing_usable_is_422_and_writes_nothing(care, migrated_database_url: str, body: Any) -> None:
    client, keys, enquiry_id = care
    answer = _post(client, enquiry_id, body, keys["customer_care"])
    assert answer.status_code == 422, answer.text
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT status FROM enquiries").fetchall() == [("open",)]
        assert conn.execute("SELECT count(*) FROM enquiry_updates WHERE by = 'alice'").fetchone() == (0,)


def test_only_customer_care_works_enquiries_and_an_unknown_one_is_404(care) -> None:
    client, keys, enquiry_id = care
    body = {"status": "closed", "note": "not mine to close"}
    assert _post(client, enquiry_id, body, {}).status_code == 401
    assert _post(client, enquiry_id, body, keys["reader"]).status_code == 403
    assert _post(client, enquiry_id, body, keys["meterization"]).status_code == 403
    unknown = _post(client, enquiry_id + 1000, body, keys["customer_care"])
    assert unknown.status_code == 404 and "no enquiry" in unknown.json()["detail"]
    assert client.get(f"/enquiries/{enquiry_id}", headers=keys["reader"]).json()["status"] == "open"


def test_an_enquiry_closed_through_the_api_is_reopened_and_told_when_its_alert_runs_again(
    care, migrated_database_url: str
) -> None:
    """The burst ended at closing time and a person closed its enquiry on that; that night the flow
    is found still running as a leak (migration 0033): the enquiry is open again, with the note."""
    client, keys, enquiry_id = care
    ended = DETECTED + timedelta(hours=8)
    resolved = _burst("M1").replace(status=AlertStatus.RESOLVED, ended_at=ended, resolved_at=ended)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(resolved=[resolved]))
    closed = _post(
        client, enquiry_id, {"status": "closed", "note": "flow stopped, customer fixed it"}, keys["customer_care"]
    )
    assert closed.status_code == 200, closed.text
    running = resolved.replace(kind=AlertKind.LEAK, status=AlertStatus.ONGOING, ended_at=None, resolved_at=None)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(updated=[running]))
    read = client.get(f"/enquiries/{enquiry_id}", headers=keys["reader"]).json()
    assert (read["status"], read["closed_at"]) == ("open", None)
    notes = [(u["by"], u["note"]) for u in read["updates"]]
    assert ("alice", "status open → closed; flow stopped, customer fixed it") in notes
    assert notes[-1] == ("detection", "alert ongoing again: later reads show its flow did not stop; enquiry reopened")
    again = _post(client, enquiry_id, {"status": "in_progress"}, keys["customer_care"])
    assert again.status_code == 200 and again.json()["status"] == "in_progress"


def test_a_change_waits_for_one_being_made_and_decides_on_the_status_it_left(care, migrated_database_url: str) -> None:
    """A colleague is closing the enquiry (their transaction holds it) when alice closes it too: hers
    waits, then finds it closed (409), instead of closing it a second time over the colleague's."""
    client, keys, enquiry_id = care
    answers: list[Any] = []
    with psycopg.connect(migrated_database_url) as colleague:
        colleague.execute("SELECT 1 FROM enquiries WHERE enquiry_id = %s FOR UPDATE", (enquiry_id,))
        colleague.execute(
            "UPDATE enquiries SET status = 'closed', closed_at = now() WHERE enquiry_id = %s", (enquiry_id,)
        )
        alice = threading.Thread(
            target=lambda: answers.append(
                _post(client, enquiry_id, {"status": "closed", "note": "fixed"}, keys["customer_care"])
            )
        )
        alice.start()
        with psycopg.connect(migrated_database_url, autocommit=True) as watch:
            waiting = 0
            for _ in range(600):  # until alice's request waits on the colleague's lock, however loaded the machine
                (waiting,) = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ).fetchone() or (0,)
                if waiting:
                    break
                time.sleep(0.1)
            assert waiting == 1
        colleague.commit()
    alice.join()
    (answer,) = answers
    assert answer.status_code == 409 and "already closed" in answer.json()["detail"], answer.text


@pytest.mark.parametrize(
    "signs",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "http://evil.example:8000/page"},
    ],
)
def test_a_change_signed_by_the_page_s_cookie_from_another_site_is_refused_and_changes_nothing(
    care, signs: dict[str, str]
) -> None:
    """The API took the web page's cookie on its writes from any origin: what kept another site
    from closing an enquiry under the desk's key was only the cookie's SameSite=Strict and the
    API's JSON bodies. A write signed by the cookie now has the page's own sign-in check; one whose
    key comes with the request (a header no browser adds across sites) does not need it."""
    client, keys, enquiry_id = care
    key = keys["customer_care"]["Authorization"].removeprefix("Bearer ")
    client.cookies.set("aquami_key", key)
    refused = _post(client, enquiry_id, {"status": "closed"}, signs)
    assert refused.status_code == 403, refused.text
    assert client.get(f"/enquiries/{enquiry_id}").json()["status"] == "open"
    from_the_page = _post(client, enquiry_id, {"status": "in_progress"}, {"Origin": "http://testserver"})
    assert from_the_page.status_code == 200, from_the_page.text
    client.cookies.clear()
    with_its_key = _post(client, enquiry_id, {"status": "escalated"}, {**keys["customer_care"], **signs})
    assert with_its_key.status_code == 200, with_its_key.text
