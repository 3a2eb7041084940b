"""Customer care calls back the person who raised an Open311 request: GET /enquiries/{id} and the
enquiry's page show what was given with it (service, description, location, contact) to a
customer_care or admin key only. Before, the contact details were stored (open311_requests, server
migration 0043) and served by nothing: care could not call anyone back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key

OWN = {"Origin": "http://testserver"}
ROLES = ("customer_care", "admin", "reader", "meterization")
CARE = {"customer_care", "admin"}
GIVEN = {
    "service_code": "no_water",
    "description": "No water since 7am.\nThe neighbours have none either.",
    "address_string": "14 Mill Lane",
    "lat": "51.5",
    "long": "-0.12",
    "first_name": "Ana",
    "last_name": "Lima",
    "email": "ana.lima@example.org",
    "phone": "+44 20 7946 0958",
    "attribute[account]": "A-404",
}
PERSONAL = ("Ana", "Lima", "ana.lima@example.org", "7946 0958", "14 Mill Lane", "No water since 7am")


@dataclass
class Desk:
    client: TestClient
    conn: psycopg.Connection
    keys: dict[str, str]

    def get(self, role: str, enquiry_id: int) -> Any:
        return self.client.get(f"/enquiries/{enquiry_id}", headers={"Authorization": f"Bearer {self.keys[role]}"})

    def raise_request(self, fields: dict[str, str]) -> int:
        raised = self.client.post("/open311/v2/requests.json", data={**fields, "api_key": self.keys["customer_app"]})
        assert raised.status_code == 200, raised.text
        return int(raised.json()[0]["service_request_id"])

    def page(self, role: str, enquiry_id: int) -> str:
        self.client.cookies.clear()
        signed_in = self.client.post("/login", data={"key": self.keys[role]}, headers=OWN, follow_redirects=False)
        assert SESSION_COOKIE in signed_in.headers["set-cookie"]
        answer = self.client.get(f"/care/enquiries/{enquiry_id}")
        self.client.cookies.clear()
        assert answer.status_code == 200
        return answer.text


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        names = {"customer_care": "alice", "admin": "ada", "reader": "rita", "meterization": "mo"}
        keys = {role: create_api_key(conn, name, [role]) for role, name in names.items()}
        keys["customer_app"] = create_api_key(conn, "fixit app", ["customer_app"])
        app = create_app(migrated_database_url)
        with TestClient(app) as client:
            # The pool's first connection is made in the background, and psycopg_pool draws its
            # lifetime from the global random: made during a hypothesis example, Hypothesis takes it
            # for a strategy using random and warns.
            app.state.pool.wait()
            yield Desk(client, conn, keys)


def test_care_gets_what_the_request_was_raised_with_and_the_other_readers_none_of_it(desk: Desk) -> None:
    enquiry_id = desk.raise_request(GIVEN)
    for role in ("customer_care", "admin"):
        answer = desk.get(role, enquiry_id)
        assert answer.status_code == 200
        assert answer.json()["open311"] == {
            "service_code": "no_water",
            "service_name": "No water or low pressure",
            "description": GIVEN["description"],
            "lat": 51.5,
            "long": -0.12,
            "address_string": "14 Mill Lane",
            "address_id": None,
            "media_url": None,
            "attribute": {"account": "A-404"},
            "contact": {"first_name": "Ana", "last_name": "Lima", "email": "ana.lima@example.org",
                        "phone": "+44 20 7946 0958"},
            "raised_by": "fixit app",
        }  # fmt: skip
    for role in ("reader", "meterization"):
        answer = desk.get(role, enquiry_id)
        assert answer.status_code == 200 and "open311" not in answer.json()
        assert not [said for said in PERSONAL[:4] if said in answer.text], role


def test_an_enquiry_raised_otherwise_has_open311_null_for_care(desk: Desk) -> None:
    row = desk.conn.execute(
        "INSERT INTO enquiries (kind, category, source, subject) VALUES ('complaint', 'complaint', 'staff', 'rude')"
        " RETURNING enquiry_id"
    ).fetchone()
    assert row is not None
    assert desk.get("customer_care", row[0]).json()["open311"] is None
    assert "open311" not in desk.get("reader", row[0]).json()


def test_working_it_answers_care_with_the_contact_too(desk: Desk) -> None:
    enquiry_id = desk.raise_request(GIVEN)
    worked = desk.client.post(
        f"/enquiries/{enquiry_id}/updates",
        json={"status": "in_progress", "note": "called Ana back"},
        headers={"Authorization": f"Bearer {desk.keys['customer_care']}"},
    )
    assert worked.status_code == 200 and worked.json()["open311"]["contact"]["phone"] == "+44 20 7946 0958"


def test_the_openapi_schema_says_who_gets_open311_and_does_not_require_it(desk: Desk) -> None:
    schemas = desk.client.get("/openapi.json").json()["components"]["schemas"]
    enquiry = schemas["EnquiryWithUpdates"]
    assert "open311" in enquiry["properties"] and "open311" not in enquiry["required"]
    assert "customer_care or admin key only" in enquiry["properties"]["open311"]["description"]
    assert set(schemas["Open311Contact"]["properties"]) == {"first_name", "last_name", "email", "phone"}
    assert "open311" not in schemas["Enquiry"]["properties"]  # GET /enquiries lists none of it


def test_the_enquiry_page_shows_care_how_to_call_back_and_the_other_readers_nothing_of_it(desk: Desk) -> None:
    enquiry_id = desk.raise_request({**GIVEN, "media_url": "https://example.org/photo.jpg"})
    for role in ("customer_care", "admin"):
        shown = desk.page(role, enquiry_id)
        assert "<h2>Raised through Open311</h2>" in shown
        assert "No water or low pressure (no_water), by fixit app" in shown
        assert "<dd>Ana Lima</dd>" in shown
        assert '<a href="mailto:ana.lima%40example.org">ana.lima@example.org</a>' in shown
        assert '<a href="tel:+442079460958">+44 20 7946 0958</a>' in shown
        assert "No water since 7am.\nThe neighbours have none either." in shown
        assert "<dd>14 Mill Lane</dd>" in shown and "<dd>51.5, -0.12</dd>" in shown
        assert "<dt>account given</dt><dd>A-404</dd>" in shown
        assert 'href="https://example.org/photo.jpg" rel="noopener noreferrer nofollow"' in shown
    for role in ("reader", "meterization"):
        shown = desk.page(role, enquiry_id)
        assert "Raised through Open311" not in shown
        assert not [said for said in PERSONAL[:4] if said in shown], role


NAME = st.from_regex(r"[A-Za-zÀ-ÿ' \-]{0,20}[A-Za-zÀ-ÿ]", fullmatch=True)
CONTACT = st.fixed_dictionaries(
    {},
    optional={
        "first_name": NAME,
        "last_name": NAME,
        "email": st.from_regex(r"[a-z0-9.+]{1,12}@[a-z0-9.\-]{1,12}", fullmatch=True),
        "phone": st.from_regex(r"\+?[0-9 ]{0,12}[0-9]", fullmatch=True),
    },
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contact=CONTACT, role=st.sampled_from(ROLES))
def test_a_contact_is_answered_exactly_as_given_to_care_and_to_no_other_reader(
    desk: Desk, contact: dict[str, str], role: str
) -> None:
    enquiry_id = desk.raise_request({"service_code": "complaint", "address_string": "1 Quay", **contact})
    answer = desk.get(role, enquiry_id).json()
    if role in CARE:
        expected = {name: contact.get(name) for name in ("first_name", "last_name", "email", "phone")}
        assert answer["open311"]["contact"] == expected
    else:
        assert "open311" not in answer
