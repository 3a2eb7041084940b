"""A customers' app on Open311 that retries, follows its requests, and sends odd text (server.open311,
server migration 0062). Before: each retry of a POST raised another enquiry; a customer_app key was
refused (403) GET requests.json and requests/{id}.json; a description or name of invisible
characters alone (``"\\u200b"``) was stored as an enquiry that says nothing; and GET requests.json
answered an unknown service_code with ``[]``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import create_api_key
from tests.server.live_server import running_server
from tests.server.test_open311 import Desk

V2 = "/open311/v2"
LEAK = {"service_code": "leak_street", "description": "Water coming up through the road", "lat": "51.5", "long": "-0.1"}


def _setup(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        keys = {
            "customer_app": create_api_key(conn, "fixit app", ["customer_app"]),
            "other_app": create_api_key(conn, "other app", ["customer_app"]),
            "customer_care": create_api_key(conn, "alice", ["customer_care"]),
        }
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'Household one')")
    return keys


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    keys = _setup(migrated_database_url)
    app = create_app(migrated_database_url)
    with TestClient(app) as client:
        # the pool's first connection, made in the background, draws its lifetime from the global
        # random: made during a hypothesis example, Hypothesis takes it for a strategy using random
        app.state.pool.wait()
        yield Desk(client, migrated_database_url, keys)


def _enquiries(desk: Desk) -> int:
    ((count,),) = desk.rows("SELECT count(*) FROM enquiries")
    return int(count)


def _id(answer: Any) -> int:
    assert answer.status_code == 200, answer.text
    return int(answer.json()[0]["service_request_id"])


# --- a retry raises no second enquiry ---------------------------------------------------------------


def test_the_same_request_sent_again_by_a_key_is_answered_with_the_first_s_enquiry(desk: Desk) -> None:
    first = desk.post_form(LEAK)
    again = desk.post_form(LEAK)
    assert again.json() == first.json()  # the id and the service's notice, as the first try was answered
    # the same request as JSON (a number where the form had its text) is the same request
    as_json = {**LEAK, "lat": 51.5, "long": -0.1}
    assert _id(desk.client.post(f"{V2}/requests.json", json=as_json, headers=desk.header("customer_app"))) == _id(first)
    assert _enquiries(desk) == 1
    assert desk.rows("SELECT count(*) FROM enquiry_updates") == [(1,)]
    # another app's identical request is its own; so is a request that differs in anything
    assert _id(desk.post_form(LEAK, role="other_app")) != _id(first)
    assert _id(desk.post_form({**LEAK, "description": "Water coming up through the road!"})) != _id(first)
    assert _enquiries(desk) == 3


def test_two_customers_of_one_app_are_told_apart_by_their_device_or_account(desk: Desk) -> None:
    """GeoReport v2's ``device_id`` and ``account_id`` (the person's device, their account with the app)
    are not kept, and were not looked at: two customers of one app reporting the very same words from
    the same place within 10 minutes were one enquiry, the second customer answered with the first's
    id. They count now; a true retry (the same device, the same account) is still one enquiry."""
    ana = _id(desk.post_form({**LEAK, "device_id": "phone-ana"}))
    ben = _id(desk.post_form({**LEAK, "device_id": "phone-ben"}))
    assert ben != ana
    assert _id(desk.post_form({**LEAK, "device_id": "phone-ana"})) == ana  # Ana's retry
    # the app's account of the person: a form's text and JSON's number of one account are one
    cy = _id(desk.post_form({**LEAK, "account_id": "42"}))
    assert cy not in (ana, ben)
    as_json = {**LEAK, "lat": 51.5, "long": -0.1, "account_id": 42}
    assert _id(desk.client.post(f"{V2}/requests.json", json=as_json, headers=desk.header("customer_app"))) == cy
    assert _id(desk.post_form({**LEAK, "account_id": "43"})) not in (ana, ben, cy)
    # without either, the same request is the same as before the change: one enquiry, retried
    plain = _id(desk.post_form(LEAK))
    assert plain not in (ana, ben, cy)
    assert _id(desk.post_form(LEAK)) == plain
    # the contact details and the place were part of it already: each tells two customers apart too
    by_mail = [_id(desk.post_form({**LEAK, "email": f"{who}@example.org"})) for who in ("ana", "ben", "ana")]
    assert by_mail[0] != by_mail[1] and by_mail[2] == by_mail[0]
    by_name = [_id(desk.post_form({**LEAK, "first_name": who})) for who in ("Ana", "Ben")]
    elsewhere = _id(desk.post_form({**LEAK, "lat": "51.6"}))
    assert len({plain, *by_mail, *by_name, elsewhere}) == 6
    assert _enquiries(desk) == 10
    assert desk.rows("SELECT count(*) FROM open311_requests") == [(10,)]


def test_the_same_request_after_ten_minutes_is_a_new_report(desk: Desk) -> None:
    first = _id(desk.post_form(LEAK))
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute("UPDATE open311_posts SET received_at = received_at - interval '9 minutes 50 seconds'")
    assert _id(desk.post_form(LEAK)) == first
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute("UPDATE open311_posts SET received_at = received_at - interval '11 seconds'")
    later = _id(desk.post_form(LEAK))
    assert later != first
    assert _id(desk.post_form(LEAK)) == later  # and its own retries are answered with it
    assert _enquiries(desk) == 2


def _post_keyed(desk: Desk, fields: dict[str, str], idempotency_key: str, role: str = "customer_app") -> Any:
    return desk.client.post(
        f"{V2}/requests.json", data=fields, headers={**desk.header(role), "Idempotency-Key": idempotency_key}
    )


def test_an_idempotency_key_tells_a_retry_from_a_new_report(desk: Desk) -> None:
    token = str(uuid.uuid4())
    first = _id(_post_keyed(desk, LEAK, token))
    assert _id(_post_keyed(desk, LEAK, f'"{token}"')) == first  # the draft's quoted string is the same key
    # a new key is a new report, however like the last: the app tells them apart itself
    second = _id(_post_keyed(desk, LEAK, str(uuid.uuid4())))
    assert second != first
    # another key's Idempotency-Key is its own
    assert _id(_post_keyed(desk, LEAK, token, role="other_app")) not in (first, second)
    assert _enquiries(desk) == 3
    # the key with another request: refused, nothing stored, the first's request named
    reused = _post_keyed(desk, {**LEAK, "description": "Another leak"}, token)
    assert reused.status_code == 422, reused.text
    assert reused.json()["title"] == "Idempotency-Key reused"
    assert f"(service request {first})" in reused.json()["detail"]
    assert _enquiries(desk) == 3
    # kept 24 hours: then the key may come again, as a new report
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute("UPDATE open311_posts SET received_at = received_at - interval '24 hours 1 second'")
    assert _id(_post_keyed(desk, {**LEAK, "description": "Another leak"}, token)) not in (first, second)
    assert _enquiries(desk) == 4


def test_a_claim_past_the_longest_window_is_deleted_by_the_next_post_not_kept(desk: Desk) -> None:
    """Each row holds a hash of what a person wrote, contact details included: kept for ever before,
    one row per distinct request."""
    _id(_post_keyed(desk, LEAK, str(uuid.uuid4())))
    _id(desk.post_form({**LEAK, "description": "A second leak", "email": "ana@example.org"}))
    _id(desk.post_form({**LEAK, "description": "A third leak"}))
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE open311_posts SET received_at = received_at - interval '24 hours 1 second'"
            " WHERE idempotency_key IS NOT NULL OR fingerprint = (SELECT fingerprint FROM open311_posts"
            " WHERE idempotency_key IS NULL ORDER BY post_id LIMIT 1)"
        )
    assert desk.rows("SELECT count(*) FROM open311_posts WHERE received_at < now() - interval '24 hours'") == [(2,)]
    newest = _id(desk.post_form({**LEAK, "description": "A fourth leak"}))
    kept = desk.rows("SELECT enquiry_id FROM open311_posts ORDER BY post_id")
    assert [enquiry for (enquiry,) in kept] == [newest - 1, newest], "the claims past 24 hours were kept"
    assert _enquiries(desk) == 4  # their enquiries are not touched


@pytest.mark.parametrize("header", ["", "   ", '""', "é-key", "tab\tkey", "k" * 256, '"' + "k" * 256 + '"'])
def test_an_idempotency_key_that_is_no_key_is_a_400_naming_the_header(desk: Desk, header: str) -> None:
    answer = desk.client.post(
        f"{V2}/requests.json",
        data=LEAK,
        headers={**desk.header("customer_app"), "Idempotency-Key": header.encode()},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [
        {"location": "Idempotency-Key", "message": "1 to 255 printable ASCII characters (a UUID is best)"}
    ]
    assert _enquiries(desk) == 0


def _post_over_http(port: int, fields: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{V2}/requests.json",
        data=json.dumps(fields).encode(),
        headers={**headers, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _wait_for_waiters(url: str, count: int) -> None:
    """Until ``count`` of the server's connections wait on a lock in the test's database."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            ((waiting,),) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchall()
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"{waiting} of the {count} POSTs reached the database"
            time.sleep(0.05)


@pytest.mark.parametrize("idempotency_key", [None, "8e03978e-40d5-43e8-bc93-6894a57f9324"])
def test_two_retries_arriving_together_at_the_server_raise_one_enquiry(
    migrated_database_url: str, idempotency_key: str | None
) -> None:
    """Both POSTs are held at the database together (the enquiries table locked until both wait), so
    the second comes while the first's transaction is open: a look before inserting would find
    nothing in both, and two enquiries would be raised."""
    keys = _setup(migrated_database_url)
    headers = {"Authorization": f"Bearer {keys['customer_app']}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    with running_server(migrated_database_url) as port, ThreadPoolExecutor(2) as pool:
        with psycopg.connect(migrated_database_url) as holder:
            holder.execute("LOCK TABLE enquiries IN SHARE ROW EXCLUSIVE MODE")
            tries = [pool.submit(_post_over_http, port, LEAK, headers) for _ in range(2)]
            _wait_for_waiters(migrated_database_url, 2)
        answers = [attempt.result(timeout=60) for attempt in tries]
    assert [status for status, _ in answers] == [200, 200], answers
    assert answers[0][1] == answers[1][1]
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM enquiries").fetchall() == [(1,)]
        assert conn.execute("SELECT count(*) FROM open311_requests").fetchall() == [(1,)]


# --- an app follows the requests its customers raised ----------------------------------------------


def test_an_app_reads_the_status_of_its_own_requests_without_care_s_notes_or_contacts(desk: Desk) -> None:
    contact = {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.org", "phone": "0412 345 678"}
    mine = _id(desk.post_form({**LEAK, **contact}))
    billing = _id(desk.post_form({"service_code": "billing_query", "attribute[account]": "A-1"}))
    theirs = _id(desk.post_form({**LEAK, "description": "Theirs"}, role="other_app"))
    by_care = _id(desk.post_form({**LEAK, "description": "Phoned in"}, role="customer_care"))
    note = "Called Jane Doe on 0412 345 678: crew sent, she sounded upset"
    worked = desk.client.post(
        f"/enquiries/{mine}/updates",
        json={"status": "in_progress", "note": note},
        headers=desk.header("customer_care"),
    )
    assert worked.status_code == 200, worked.text

    app = desk.header("customer_app")
    listed = desk.client.get(f"{V2}/requests.json", headers=app)
    assert listed.status_code == 200, listed.text
    assert [int(r["service_request_id"]) for r in listed.json()] == [billing, mine]
    ((followed),) = desk.client.get(f"{V2}/requests/{mine}.json", headers=app).json()
    assert followed == listed.json()[1]
    assert (followed["status"], followed["aquami_status"], followed["status_notes"]) == ("open", "in_progress", None)
    assert (followed["description"], followed["lat"], followed["service_code"]) == (
        LEAK["description"],
        51.5,
        "leak_street",
    )
    shown = json.dumps(listed.json())
    for private in (*contact.values(), "Called", "A-1"):
        assert private not in shown
    # another app's request, and one customer care raised, are answered as no request at all
    for other in (theirs, by_care, 999999):
        refused = desk.client.get(f"{V2}/requests/{other}.json", headers=app)
        assert refused.status_code == 404, refused.text
        assert refused.json()["detail"] == f"no service request {other}"
    assert desk.client.get(
        f"{V2}/requests.json", params={"service_request_id": f"{theirs},{mine}"}, headers=app
    ).json() == [followed]
    # customer care sees what it saw before: every request, its own notes
    care = desk.client.get(f"{V2}/requests.json", headers=desk.header("customer_care")).json()
    assert [int(r["service_request_id"]) for r in care] == [by_care, theirs, billing, mine]
    assert care[-1]["status_notes"] == f"status open → in_progress; {note}"


def test_a_rotated_app_key_still_reads_its_requests_and_a_care_key_of_its_name_raises_none_of_them(
    desk: Desk,
) -> None:
    mine = _id(desk.post_form(LEAK))
    with psycopg.connect(desk.url, autocommit=True) as conn:
        rotated = create_api_key(conn, "fixit app", ["customer_app"])
        care_named_so = create_api_key(conn, "fixit app", ["customer_care"])
    staff_s = desk.client.post(
        f"{V2}/requests.json",
        data={**LEAK, "description": "Staff's"},
        headers={"Authorization": f"Bearer {care_named_so}"},
    )
    assert staff_s.status_code == 200, staff_s.text
    listed = desk.client.get(f"{V2}/requests.json", headers={"Authorization": f"Bearer {rotated}"})
    assert [int(r["service_request_id"]) for r in listed.json()] == [mine]


def test_a_reader_key_still_reads_no_request(desk: Desk) -> None:
    with psycopg.connect(desk.url, autocommit=True) as conn:
        reader = create_api_key(conn, "rita", ["reader"])
    for path in (f"{V2}/requests.json", f"{V2}/requests/1.json"):
        assert desk.client.get(path, headers={"Authorization": f"Bearer {reader}"}).status_code == 403


# --- text that shows nothing ------------------------------------------------------------------------

#: Characters that show nothing: whitespace, controls, format characters (zero-width, bidirectional,
#: the byte order mark, tags), variation selectors and the fillers (listed here, not taken from the code).
_NOTHING_SHOWN = st.one_of(
    st.sampled_from(
        [
            " ",
            "\t",
            "\n",
            "\u00a0",
            "\u3000",
            "\u200b",
            "\u200c",
            "\u200d",
            "\u200e",
            "\u200f",
            "\u2060",
            "\u2061",
            "\u202e",
            "\u2066",
            "\ufeff",
            "\u00ad",
            "\u034f",
            "\u115f",
            "\u1160",
            "\u3164",
            "\uffa0",
            "\u2800",
            "\u180e",
            "\ufe0f",
            "\U000e0020",
            "\U000e0100",
            "\x1b",
            "\x7f",
            "\u0085",
        ]
    ),
    st.characters(categories=["Cf", "Zs"]),
)
_INVISIBLE_TEXT = st.text(_NOTHING_SHOWN, min_size=1, max_size=40)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["description", "first_name", "last_name", "address_string", "attribute[account]"]),
    text=_INVISIBLE_TEXT,
)
def test_text_of_invisible_characters_alone_is_a_400_naming_the_field_and_nothing_is_stored(
    desk: Desk, field: str, text: str
) -> None:
    service = "billing_query" if field == "attribute[account]" else "leak_street"
    fields = {**LEAK, "service_code": service, field: text}
    answer = desk.client.post(f"{V2}/requests.json", json=_as_json(fields), headers=desk.header("customer_app"))
    assert answer.status_code == 400, answer.text
    ((error),) = answer.json()["errors"]
    assert error["location"] == field
    assert error["message"].startswith(("needs a visible character", "needs a character other than blanks"))
    shown = next((c for c in text if not c.isspace()), None)
    if shown is not None:  # the first invisible character is named, so the app's developer can find it
        assert f"U+{ord(shown):04X}" in error["message"]
    assert _enquiries(desk) == 0


def _as_json(fields: dict[str, str]) -> dict[str, Any]:
    """A form's fields as the JSON object aquami takes (a JSON string carries any character a form's
    percent-encoding would, and keeps this test's characters from the test client's form encoder)."""
    body: dict[str, Any] = {name: value for name, value in fields.items() if not name.startswith("attribute[")}
    body["attribute"] = {
        name[len("attribute[") : -1]: value for name, value in fields.items() if name.startswith("attribute[")
    }
    return body


@pytest.mark.parametrize("text", ["a\u200b", "\u200bJane", "\u3164x", "\u0301", "🚰"])
def test_text_with_something_visible_is_kept_exactly_as_written(desk: Desk, text: str) -> None:
    enquiry_id = _id(desk.post_form({**LEAK, "description": text, "first_name": text}))
    assert desk.rows("SELECT description, first_name FROM open311_requests WHERE enquiry_id = %s", (enquiry_id,)) == [
        (text, text)
    ]


# --- an unknown service code ------------------------------------------------------------------------


def test_an_unknown_service_code_filter_is_a_400_naming_it_as_post_says(desk: Desk) -> None:
    _id(desk.post_form(LEAK))
    for role in ("customer_care", "customer_app"):
        answer = desk.client.get(
            f"{V2}/requests.json", params={"service_code": "leak_street,NOPE,leak_steet"}, headers=desk.header(role)
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"] == [
            {
                "location": "service_code",
                "message": f"no service 'NOPE', 'leak_steet'; GET {V2}/services.json lists them",
            }
        ]
    posted = desk.post_form({**LEAK, "service_code": "NOPE"})
    assert posted.json()["errors"] == [
        {"location": "service_code", "message": f"no service 'NOPE'; GET {V2}/services.json lists them"}
    ]
    care = desk.header("customer_care")
    assert len(desk.client.get(f"{V2}/requests.json", params={"service_code": "leak_street"}, headers=care).json()) == 1
    assert (
        desk.client.get(f"{V2}/requests.json", params={"service_code": "detected_customer_leak"}, headers=care).json()
        == []
    )


def test_a_detected_code_whose_rule_was_removed_still_filters_the_enquiries_filed_under_it(desk: Desk) -> None:
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO enquiries (kind, category, source, priority, subject) "
            "VALUES ('service_request', 'frozen pipe', 'detection', 'high', 'Frozen pipe behind meter M1')"
        )
    answer = desk.client.get(
        f"{V2}/requests.json", params={"service_code": "detected_frozen_pipe"}, headers=desk.header("customer_care")
    )
    assert answer.status_code == 200, answer.text
    assert [r["description"] for r in answer.json()] == ["Frozen pipe behind meter M1"]
