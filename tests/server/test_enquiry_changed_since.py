"""A change to an enquiry made on what someone was shown is saved only if the enquiry is still as
shown. Before, the enquiry page's form carried no version: a page loaded while the enquiry was open,
sent after a colleague closed it ('supply restored, customer confirmed'), reopened it as in progress
with a 303 and no warning, and a double-click wrote 'left a voicemail' twice."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key

OWN = {"Origin": "http://testserver"}
VERSION = re.compile(r'<input type="hidden" name="updated_at" value="([^"]+)">')


@dataclass
class Desk:
    client: TestClient
    url: str
    keys: dict[str, str]
    enquiry_id: int

    @property
    def page(self) -> str:
        return f"/care/enquiries/{self.enquiry_id}"

    def shown(self) -> str:
        """Agent A's page, loaded now: the version its form carries."""
        found = VERSION.search(self.client.get(self.page).text)
        assert found is not None
        return found[1]

    def send(self, form: dict[str, str]) -> Any:
        return self.client.post(self.page, data=form, headers=OWN, follow_redirects=False)

    def api(self, body: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self.keys['admin']}"}
        return self.client.post(f"/enquiries/{self.enquiry_id}/updates", json=body, headers=headers)

    def state(self) -> tuple[str, list[str]]:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT status FROM enquiries WHERE enquiry_id = %s", (self.enquiry_id,)).fetchone()
            notes = conn.execute(
                "SELECT note FROM enquiry_updates WHERE enquiry_id = %s ORDER BY update_id", (self.enquiry_id,)
            ).fetchall()
        assert row is not None
        return row[0], [n for (n,) in notes]


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"k {role}", [role]) for role in ("customer_care", "admin")}
        row = conn.execute(
            "INSERT INTO enquiries (kind, category, source, subject) "
            "VALUES ('service_request', 'no water', 'customer', 'No water') RETURNING enquiry_id"
        ).fetchone()
        assert row is not None
    with TestClient(create_app(migrated_database_url)) as client:
        client.cookies.set(SESSION_COOKIE, keys["customer_care"])
        yield Desk(client, migrated_database_url, keys, row[0])


def test_a_page_loaded_before_a_colleague_closed_it_saves_nothing_and_says_so(desk: Desk) -> None:
    shown = desk.shown()
    closed = desk.api({"status": "closed", "note": "supply restored, customer confirmed"})
    assert closed.status_code == 200, closed.text
    stale = desk.send({"status": "in_progress", "note": "calling the customer now", "updated_at": shown})
    assert stale.status_code == 409 and stale.headers["content-type"].startswith("text/html")
    assert "Not saved: this enquiry changed after the page was loaded" in stale.text
    assert ">calling the customer now</textarea>" in stale.text  # the words are kept
    assert "supply restored, customer confirmed" in stale.text  # the page as it is now
    assert desk.state() == ("closed", ["status open → closed; supply restored, customer confirmed"])
    # the page answered carries the enquiry as it is now: sent again, it is saved
    found = VERSION.search(stale.text)
    assert found is not None and found[1] != shown
    again = desk.send({"status": "in_progress", "note": "calling the customer now", "updated_at": found[1]})
    assert again.status_code == 303, again.text
    assert desk.state()[0] == "in_progress"


def test_a_form_sent_twice_writes_its_note_once(desk: Desk) -> None:
    form = {"note": "left a voicemail", "updated_at": desk.shown()}
    assert desk.send(form).status_code == 303
    assert desk.send(form).status_code == 409
    assert desk.state() == ("open", ["left a voicemail"])


def test_a_form_without_the_version_a_page_writes_saves_nothing(desk: Desk) -> None:
    for version in ("", "yesterday", "2026-03-02T04:00:00"):  # none, none at all, no offset
        form = {"note": "left a voicemail", "status": "closed", **({"updated_at": version} if version else {})}
        assert desk.send(form).status_code == 409
    assert desk.state() == ("open", [])


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notes=st.lists(st.sampled_from(["left a voicemail", "called back", "crew sent"]), min_size=1, max_size=6))
def test_every_change_moves_the_version_on_so_each_version_is_saved_on_once(desk: Desk, notes: list[str]) -> None:
    """A note alone moves updated_at on too, even within the same microsecond: each version a page
    showed takes one change, and the same form sent again after it takes none."""
    before = len(desk.state()[1])
    for note in notes:
        shown = desk.shown()
        assert desk.send({"note": note, "updated_at": shown}).status_code == 303
        assert desk.send({"note": note, "updated_at": shown}).status_code == 409
    assert desk.state()[1][before:] == notes


def test_the_api_takes_the_version_it_read_and_refuses_a_change_since(desk: Desk) -> None:
    read = desk.client.get(
        f"/enquiries/{desk.enquiry_id}", headers={"Authorization": f"Bearer {desk.keys['admin']}"}
    ).json()
    assert desk.api({"note": "first", "expected_updated_at": read["updated_at"]}).status_code == 200
    refused = desk.api({"note": "second", "expected_updated_at": read["updated_at"]})
    assert refused.status_code == 409 and refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["title"] == "Enquiry changed since" and "nothing was saved" in refused.json()["detail"]
    assert desk.api({"note": "without a version, as before"}).status_code == 200
    assert desk.state()[1] == ["first", "without a version, as before"]


def test_two_changes_at_the_same_moment_still_move_the_version_on(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    """now() is the transaction's start: two changes in one transaction (or in two begun in the same
    microsecond) would leave updated_at as it was, and a form sent twice would be saved twice."""
    from server.care import repository

    def version(conn: psycopg.Connection[Any], enquiry_id: int) -> dict[str, Any] | None:
        return conn.execute("SELECT updated_at FROM enquiries WHERE enquiry_id = %s", (enquiry_id,)).fetchone()

    monkeypatch.setattr(repository, "get_enquiry", version)  # its snapshot cannot be taken inside a transaction
    with psycopg.connect(desk.url, row_factory=dict_row) as conn, conn.transaction():

        def change(note: str, shown: datetime) -> dict[str, Any] | None:
            return repository.change_enquiry(
                conn,  # type: ignore[arg-type]  # a dict_row connection, as the server's pool gives
                desk.enquiry_id, by="a", status=None, note=note, shown_updated_at=shown,
            )  # fmt: skip

        shown = version(conn, desk.enquiry_id)
        assert shown is not None
        first = change("one", shown["updated_at"])
        assert first is not None and first["updated_at"] > shown["updated_at"]
        second = change("two", first["updated_at"])  # in the same transaction: the same now()
        assert second is not None and second["updated_at"] > first["updated_at"]
        with pytest.raises(repository.ChangedSince):
            change("one", shown["updated_at"])
