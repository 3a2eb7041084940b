"""Customer care works an enquiry on the web page: its own page (/care/enquiries/{id}) with its
updates and, for a key that works enquiries, a form that is the API's POST /enquiries/{id}/updates
for a browser without JavaScript (a plain POST, a 303 back). Before, the page showed an alert's
enquiry number and nothing could be done with it there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key

DETECTED = datetime(2026, 3, 2, 4, tzinfo=UTC)
OWN = {"Origin": "http://testserver"}  # what a browser sends with the page's own form
FORM = '<form class="work" method="post" action="/care/enquiries/'


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str], int]]:
    """A client, a connection, keys by role, and the enquiry a burst on M1 raised."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {
            role: create_api_key(conn, name, [role])
            for role, name in (
                ("customer_care", "alice"),
                ("reader", "rita"),
                ("meterization", "mo"),
                ("billing", "bill"),
                ("admin", "ada"),
            )
        }
        burst = new_alert(
            AlertKind.BURST, "M1", "D1", start=DETECTED - timedelta(hours=2), detected_at=DETECTED,
            last_seen=DETECTED, ended_at=None, rate_l_h=186.0, volume_l=372.0, confidence=0.8,
            evidence=((DETECTED - timedelta(hours=1), DETECTED),),
        ).replace(updated_at=DETECTED)  # fmt: skip
        save_changes(conn, AlertChanges(opened=[burst]))
        row = conn.execute("SELECT enquiry_id FROM enquiries WHERE meter_id = 'M1'").fetchone()
        assert row is not None
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys, row[0]


def _sign_in(client: TestClient, key: str) -> None:
    """As a person does: the sign-in form's POST, which sets the cookie."""
    client.cookies.clear()
    signed_in = client.post("/login", data={"key": key}, headers=OWN, follow_redirects=False)
    assert signed_in.status_code == 303 and SESSION_COOKIE in signed_in.headers["set-cookie"]


def _shown(client: TestClient, enquiry_id: int) -> str:
    """The version of the enquiry its page's form carries (its updated_at as shown)."""
    found = re.search(
        r'<input type="hidden" name="updated_at" value="([^"]+)">', client.get(f"/care/enquiries/{enquiry_id}").text
    )
    assert found is not None
    return found[1]


def _select(page: str, name: str) -> str:
    """The page's select of that name (the form has one for status, priority and category)."""
    found = re.search(rf'<select name="{name}">(.*?)</select>', page, re.S)
    assert found is not None
    return found[1]


def _state(conn: psycopg.Connection, enquiry_id: int) -> tuple[str, int]:
    row = conn.execute(
        "SELECT status, (SELECT count(*) FROM enquiry_updates u WHERE u.enquiry_id = e.enquiry_id) "
        "FROM enquiries e WHERE enquiry_id = %s",
        (enquiry_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_care_staff_open_the_enquiry_from_the_page_change_it_and_see_its_updates(desk) -> None:
    client, _, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    front = client.get("/")
    link = f'<a href="/care/enquiries/{enquiry_id}"'
    assert link in front.text and f"enquiry #{enquiry_id}</a>, open, urgent</span>" in front.text
    opened = client.get(f"/care/enquiries/{enquiry_id}")
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/html")
    assert FORM in opened.text and 'http-equiv="refresh"' not in opened.text  # nothing wipes the form
    offered = re.findall(r'<option value="(\w*)"', _select(opened.text, "status"))
    assert offered == ["", "closed", "escalated", "in_progress"]  # server.care.workflow's moves from open
    sent = client.post(
        f"/care/enquiries/{enquiry_id}",
        data={
            "status": "in_progress",
            "note": "called the customer\r\nplumber booked",
            "updated_at": _shown(client, enquiry_id),
        },
        headers=OWN,
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/care/enquiries/{enquiry_id}"
    assert sent.headers["cache-control"] == "no-store"
    noted = client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "", "note": "customer thanked us", "updated_at": _shown(client, enquiry_id)},
        headers=OWN,
    )
    assert noted.status_code == 200 and str(noted.url).endswith(f"/care/enquiries/{enquiry_id}")  # followed back
    api = client.get(f"/enquiries/{enquiry_id}", headers={"Authorization": f"Bearer {keys['reader']}"}).json()
    assert api["status"] == "in_progress"
    assert [(u["by"], u["note"]) for u in api["updates"][-2:]] == [
        ("alice", "status open → in_progress; called the customer\r\nplumber booked"),
        ("alice", "customer thanked us"),
    ]
    assert "in progress" in noted.text and "status open → in_progress; called the customer" in noted.text
    assert "customer thanked us" in noted.text and "alice" in noted.text
    assert re.findall(r'<option value="(\w*)"', _select(noted.text, "status")) == ["", "closed", "escalated", "open"]


def test_the_page_that_refreshes_itself_holds_no_form_to_type_in(desk) -> None:
    """The meters page reloads every 10 s (a meta refresh, no JavaScript): a form on it would be
    wiped while someone typed. Its enquiries are links to their own page, which does not reload."""
    client, _, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    front = client.get("/").text
    assert '<meta http-equiv="refresh" content="10">' in front
    assert f'<a href="/care/enquiries/{enquiry_id}"' in front
    assert "<textarea" not in front and "<select" not in front
    assert re.findall(r'<form[^>]*action="([^"]+)"', front) == ["/logout"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://testserver:8000"},  # another port of the host is another origin
        {"Origin": "null"},  # a sandboxed frame's form
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-site"},
        {"Referer": "http://evil.example/page"},
    ],
)
def test_another_site_s_form_changes_nothing(desk, headers) -> None:
    """Cross-site request forgery: another site's form posted with the care desk's cookie would
    close an enquiry in their name. It is refused as the sign-in is (server.origins)."""
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    before = _state(conn, enquiry_id)
    sent = client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "closed", "note": "no leak here"},
        headers=headers,
        follow_redirects=False,
    )
    assert sent.status_code == 403 and sent.headers["content-type"].startswith("text/html")
    assert "sent from another site" in sent.text and "no leak here" not in sent.text
    assert _state(conn, enquiry_id) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        {"Referer": "http://testserver/care/enquiries/1"},
        {},  # a client that is no browser
    ],
)
def test_the_page_s_own_form_is_taken(desk, headers) -> None:
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    shown = _shown(client, enquiry_id)
    sent = client.post(
        f"/care/enquiries/{enquiry_id}", data={"status": "escalated", "updated_at": shown}, headers=headers
    )
    assert sent.status_code == 200 and _state(conn, enquiry_id)[0] == "escalated"


@pytest.mark.parametrize("role", ["reader", "meterization"])
def test_other_roles_see_the_enquiry_and_its_updates_but_no_form_and_cannot_post_one(desk, role) -> None:
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys[role])
    assert f"/care/enquiries/{enquiry_id}" in client.get("/").text
    shown = client.get(f"/care/enquiries/{enquiry_id}")
    assert shown.status_code == 200 and "Updates" in shown.text and "burst" in shown.text.lower()
    assert FORM not in shown.text and '<textarea name="note"' not in shown.text
    # a meterization key dismisses alerts (as in the API): its page has that form, not this one
    assert ("/dismiss-alert" in shown.text) == (role == "meterization")
    before = _state(conn, enquiry_id)
    sent = client.post(f"/care/enquiries/{enquiry_id}", data={"status": "closed", "note": "done"}, headers=OWN)
    assert sent.status_code == 403 and "may not work enquiries" in sent.text and "customer_care" in sent.text
    assert _state(conn, enquiry_id) == before


def test_a_key_that_may_not_see_enquiries_nor_no_key_gets_the_sign_in_form(desk) -> None:
    client, conn, keys, enquiry_id = desk
    before = _state(conn, enquiry_id)
    _sign_in(client, keys["billing"])
    for answer in (
        client.get(f"/care/enquiries/{enquiry_id}"),
        client.post(f"/care/enquiries/{enquiry_id}", data={"status": "closed"}, headers=OWN),
    ):
        assert answer.status_code == 403 and "This key (billing) may not see enquiries" in answer.text
    client.cookies.clear()
    for answer in (
        client.get(f"/care/enquiries/{enquiry_id}"),
        client.post(f"/care/enquiries/{enquiry_id}", data={"status": "closed"}, headers=OWN),
    ):
        assert answer.status_code == 401 and '<form method="post" action="/login">' in answer.text
    assert _state(conn, enquiry_id) == before


def test_admin_works_enquiries_on_the_page_as_in_the_api(desk) -> None:
    """admin is accepted everywhere (server.auth): the demo's key sees the form and its change counts."""
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys["admin"])
    assert FORM in client.get(f"/care/enquiries/{enquiry_id}").text
    client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "closed", "updated_at": _shown(client, enquiry_id)},
        headers=OWN,
    )
    assert _state(conn, enquiry_id)[0] == "closed"


def test_a_move_the_workflow_refuses_is_said_on_the_page_and_the_words_are_kept(desk) -> None:
    """A move the page does not offer (escalated → open, in a form made by hand, of the enquiry as it is
    now): the workflow refuses it, and the page says so, not a JSON problem."""
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "in_progress", "updated_at": _shown(client, enquiry_id)},
        headers=OWN,
    )
    assert 'value="open"' in client.get(f"/care/enquiries/{enquiry_id}").text
    client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "escalated", "updated_at": _shown(client, enquiry_id)},
        headers=OWN,
    )
    before = _state(conn, enquiry_id)
    sent = client.post(
        f"/care/enquiries/{enquiry_id}",
        data={"status": "open", "note": "back <to> the queue", "updated_at": _shown(client, enquiry_id)},
        headers=OWN,
    )
    assert sent.status_code == 409 and sent.headers["content-type"].startswith("text/html")
    # the statuses as the page's list of moves writes them (before, the API's "in_progress")
    assert "Not saved: an enquiry escalated cannot become open; it can become closed, in progress." in sent.text
    assert ">back &lt;to&gt; the queue</textarea>" in sent.text and FORM in sent.text
    assert _state(conn, enquiry_id) == before


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"status": "", "note": ""}, "choose a new status, priority or category, or write a note"),
        ({"status": "", "note": "   "}, "choose a new status, priority or category, or write a note"),
        ({"status": "closed", "note": "!!"}, "a note is 3 to 2000 characters"),
        ({"status": "done", "note": "fixed it"}, "choose the new status from the list"),
        ({"note": "x" * 2001}, "a note is 3 to 2000 characters"),
    ],
)
def test_a_form_that_says_nothing_or_too_much_is_said_on_the_page(desk, data, says) -> None:
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    before = _state(conn, enquiry_id)
    sent = client.post(f"/care/enquiries/{enquiry_id}", data=data, headers=OWN)
    assert sent.status_code == 422 and sent.headers["content-type"].startswith("text/html")
    assert says in sent.text and FORM in sent.text
    assert _state(conn, enquiry_id) == before


@pytest.mark.parametrize("asked", ["999999", "0", "abc", "99999999999999999999", "-1"])
def test_an_unknown_enquiry_is_said_on_the_page(desk, asked) -> None:
    client, _, keys, _ = desk
    _sign_in(client, keys["customer_care"])
    shown = client.get(f"/care/enquiries/{asked}")
    sent = client.post(f"/care/enquiries/{asked}", data={"status": "closed", "note": "done"}, headers=OWN)
    for answer in (shown, sent):
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
        assert f"No enquiry {asked}" in answer.text
    assert f"There is no enquiry {asked}: nothing was saved." in sent.text


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(note=st.text(st.characters(exclude_categories=["Cs"]), max_size=12) | st.sampled_from(["ok!", " a ", "_-_"]))
def test_a_note_is_taken_on_the_page_exactly_when_the_api_takes_it(desk, note) -> None:
    """The form's note is the API's words field (server.words): what one takes, the other takes,
    stored the same; what one refuses, so does the other, and nothing is written."""
    client, conn, keys, enquiry_id = desk
    _sign_in(client, keys["customer_care"])
    api_body = {"note": note} if note.strip() else {}
    api = client.post(f"/enquiries/{enquiry_id}/updates", json=api_body, headers={"X-API-Key": keys["customer_care"]})
    before = _state(conn, enquiry_id)
    form = {"note": note, "updated_at": _shown(client, enquiry_id)}
    web = client.post(f"/care/enquiries/{enquiry_id}", data=form, headers=OWN, follow_redirects=False)
    assert api.status_code in (200, 422) and web.status_code in (303, 422)
    assert (api.status_code == 200) == (web.status_code == 303), (note, api.text)
    if web.status_code == 303:
        stored = conn.execute(
            "SELECT note FROM enquiry_updates WHERE enquiry_id = %s ORDER BY update_id DESC LIMIT 2", (enquiry_id,)
        ).fetchall()
        assert [row[0] for row in stored] == [note, note]
    else:
        assert _state(conn, enquiry_id) == before
