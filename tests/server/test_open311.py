"""Open311 GeoReport v2 over customer care's enquiries (server.open311, server migration 0043).
Before, nothing served Open311 and only detection raised enquiries: no person or app could."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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

V2 = "/open311/v2"
PEOPLE = ["leak_street", "no_water", "water_quality", "billing_query", "meter_problem", "complaint"]


@dataclass
class Desk:
    client: TestClient
    url: str
    keys: dict[str, str]

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post_form(self, fields: dict[str, str], role: str | None = "customer_app") -> Any:
        data = dict(fields) if role is None else {**fields, "api_key": self.keys[role]}
        return self.client.post(f"{V2}/requests.json", data=data)

    def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {
            role: create_api_key(conn, name, [role])
            for role, name in (
                ("customer_app", "fixit app"),
                ("customer_care", "alice"),
                ("reader", "rita"),
                ("billing", "bill"),
                ("admin", "root"),
            )
        }
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'Household one')")
        conn.execute("INSERT INTO meters (meter_id, dma, registered) VALUES ('M1', 'D1', true)")
    with TestClient(create_app(migrated_database_url)) as client:
        yield Desk(client, migrated_database_url, keys)


def _stored(desk: Desk) -> tuple[int, int, int]:
    (counts,) = desk.rows(
        "SELECT (SELECT count(*) FROM enquiries), (SELECT count(*) FROM open311_requests), "
        "(SELECT count(*) FROM enquiry_updates)"
    )
    return counts


def _burst_enquiry(desk: Desk) -> int:
    detected = datetime.now(UTC) - timedelta(hours=1)
    alert = new_alert(
        AlertKind.BURST, "M1", "D1", start=detected - timedelta(hours=2), detected_at=detected,
        last_seen=detected, ended_at=None, rate_l_h=186.0, volume_l=372.0, confidence=0.8,
        evidence=((detected - timedelta(hours=1), detected),),
    ).replace(updated_at=detected)  # fmt: skip
    with psycopg.connect(desk.url) as conn:
        save_changes(conn, AlertChanges(opened=[alert]))
    ((enquiry_id,),) = desk.rows("SELECT enquiry_id FROM enquiries WHERE alert_id IS NOT NULL")
    return int(enquiry_id)


def test_the_service_list_is_people_s_services_then_detection_s_categories_read_from_its_rules(desk: Desk) -> None:
    listed = desk.client.get(f"{V2}/services.json")  # no key: it holds no one's data
    assert listed.status_code == 200, listed.text
    services = listed.json()
    assert [s["service_code"] for s in services[: len(PEOPLE)]] == PEOPLE
    categories = sorted(c for (c,) in desk.rows("SELECT DISTINCT category FROM alert_enquiry_rules"))
    detected = {s["service_code"]: s for s in services[len(PEOPLE) :]}
    assert sorted(detected) == sorted("detected_" + c.replace(" ", "_") for c in categories)
    assert detected["detected_customer_leak"]["keywords"] == "leak"
    assert {s["group"] for s in detected.values()} == {"Detected by the meters"}
    for service in services:
        assert set(service) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
        assert service["type"] == "realtime"
    leak = services[0]
    assert (leak["metadata"], leak["group"]) == (False, "Leaks and supply")
    assert "hydrant" in leak["keywords"].split(",")
    # a rule detection gains is a service at once: the list is read, not written out twice
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute("INSERT INTO alert_enquiry_rules VALUES ('frost', 'frozen pipe', 'high', 'Frozen pipe', false)")
    codes = [s["service_code"] for s in desk.client.get(f"{V2}/services.json").json()]
    assert "detected_frozen_pipe" in codes


def test_a_service_definition_lists_its_attributes_and_an_unknown_service_is_404(desk: Desk) -> None:
    meter = desk.client.get(f"{V2}/services/meter_problem.json")
    assert meter.status_code == 200, meter.text
    assert meter.json() == {
        "service_code": "meter_problem",
        "attributes": [
            {"variable": True, "code": "account", "datatype": "string", "required": False,
             "datatype_description": "as printed on your bill", "order": 1,
             "description": "Your account number, if you know it", "values": []},
            {"variable": True, "code": "meter", "datatype": "string", "required": False,
             "datatype_description": "as printed on the meter", "order": 2,
             "description": "The meter's number, if you know it", "values": []},
        ],
    }  # fmt: skip
    assert [a["code"] for a in desk.client.get(f"{V2}/services/billing_query.json").json()["attributes"]] == ["account"]
    assert desk.client.get(f"{V2}/services/leak_street.json").json()["attributes"] == []
    unknown = desk.client.get(f"{V2}/services/graffiti.json")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")


def test_an_app_raises_a_request_by_form_as_open311_clients_post_and_care_sees_and_works_it(desk: Desk) -> None:
    answer = desk.post_form(
        {
            "service_code": "no_water",
            "description": "No water since 7am.\r\nNeighbours too.",
            "lat": "-33.8688",
            "long": "151.2093",
            "address_string": "12 High Street",
            "email": "pat@example.org",
            "first_name": "Pat",
            "last_name": "Lee",
            "phone": "+61 2 5550 1234",
            "attribute[account]": "A-1",
            "attribute[meter]": "M1",
            "jurisdiction_id": "ignored.example",
            "device_id": "",
        }
    )
    assert answer.status_code == 200, answer.text
    ((created),) = answer.json()
    assert created == {
        "service_request_id": created["service_request_id"],
        "service_notice": "Thank you. Customer care will check for work in your area and call you back.",
        "account_id": None,
    }
    enquiry_id = int(created["service_request_id"])
    care = desk.header("customer_care")
    enquiry = desk.client.get(f"/enquiries/{enquiry_id}", headers=care).json()
    assert {k: enquiry[k] for k in ("kind", "category", "source", "priority", "account_id", "meter_id", "dma")} == {
        "kind": "service_request", "category": "no water or low pressure", "source": "customer",
        "priority": "high", "account_id": "A-1", "meter_id": "M1", "dma": "D1",
    }  # fmt: skip
    assert enquiry["subject"] == "No water or low pressure (account A-1, meter M1)"  # no one's words (0051)
    assert [(u["by"], u["note"]) for u in enquiry["updates"]] == [("fixit app", "raised through Open311 (customer)")]
    listed = desk.client.get("/enquiries", params={"source": "customer"}, headers=care).json()["items"]
    assert [e["enquiry_id"] for e in listed] == [enquiry_id]
    stored = desk.rows(
        "SELECT email, first_name, last_name, phone, address_string, lat, long, attributes FROM open311_requests"
    )
    assert stored == [
        ("pat@example.org", "Pat", "Lee", "+61 2 5550 1234", "12 High Street", -33.8688, 151.2093,
         {"account": "A-1", "meter": "M1"}),
    ]  # fmt: skip

    worked = desk.client.post(
        f"/enquiries/{enquiry_id}/updates", json={"status": "in_progress", "note": "crew sent"}, headers=care
    )
    assert worked.status_code == 200, worked.text
    read = desk.client.get(f"{V2}/requests/{enquiry_id}.json", headers=care)
    assert read.status_code == 200, read.text
    ((request),) = read.json()
    assert {k: request[k] for k in ("status", "aquami_status", "status_notes", "service_code", "service_name")} == {
        "status": "open", "aquami_status": "in_progress", "status_notes": "status open → in_progress; crew sent",
        "service_code": "no_water", "service_name": "No water or low pressure",
    }  # fmt: skip
    assert request["description"] == "No water since 7am.\r\nNeighbours too."
    assert (request["address"], request["lat"], request["long"]) == ("12 High Street", -33.8688, 151.2093)
    assert (request["agency_responsible"], request["expected_datetime"], request["media_url"]) == (
        "customer care", None, None,
    )  # fmt: skip
    for moment in ("requested_datetime", "updated_datetime"):
        assert request[moment].endswith("Z") and datetime.fromisoformat(request[moment]).tzinfo is not None
    text = read.text
    for personal in ("pat@example.org", "5550", "Pat", "Lee", "A-1", "M1"):
        assert personal not in text  # no contact details, account or meter on a GET
    desk.client.post(
        f"/enquiries/{enquiry_id}/updates", json={"status": "closed", "note": "main repaired"}, headers=care
    )
    ((closed),) = desk.client.get(f"{V2}/requests/{enquiry_id}.json", headers=care).json()
    assert (closed["status"], closed["aquami_status"]) == ("closed", "closed")
    assert closed["status_notes"] == "status in_progress → closed; main repaired"


def test_customer_care_raises_one_as_staff_by_json_with_the_api_s_header(desk: Desk) -> None:
    body = {"service_code": "billing_query", "description": "Bill doubled", "attribute": {"account": "A-9"}}
    answer = desk.client.post(f"{V2}/requests.json", json=body, headers=desk.header("customer_care"))
    assert answer.status_code == 200, answer.text
    ((created),) = answer.json()
    ((source, account, note),) = desk.rows(
        "SELECT e.source, e.account_id, u.note FROM enquiries e JOIN enquiry_updates u USING (enquiry_id) "
        "WHERE e.enquiry_id = %s",
        (int(created["service_request_id"]),),
    )
    # a reference that names no account is kept as given and said, not linked nor refused
    assert (source, account) == ("staff", None)
    assert note == (
        "raised through Open311 (staff); an account reference was given that matches no account "
        "(see the request's details)"
    )


def test_who_may_raise_and_who_may_read_requests(desk: Desk) -> None:
    fields = {"service_code": "complaint", "description": "Rude on the phone", "address_string": "1 Low Rd"}
    assert desk.post_form(fields, role=None).status_code == 401
    assert desk.post_form({**fields, "api_key": "aqk_nope.nope"}, role=None).status_code == 401
    for role in ("reader", "billing"):
        refused = desk.post_form(fields, role=role)
        assert refused.status_code == 403, refused.text
    # the web page's cookie is not taken: a form another site posts would carry it
    desk.client.cookies.set(SESSION_COOKIE, desk.keys["admin"])
    assert desk.post_form(fields, role=None).status_code == 401
    desk.client.cookies.clear()
    assert _stored(desk) == (0, 0, 0)
    assert desk.post_form(fields, role="admin").status_code == 200
    for path in (f"{V2}/requests.json", f"{V2}/requests/1.json"):
        assert desk.client.get(path).status_code == 401
        assert desk.client.get(path, headers=desk.header("reader")).status_code == 403
        assert desk.client.get(path, headers=desk.header("customer_care")).status_code == 200
        assert desk.client.get(path, params={"api_key": desk.keys["customer_care"]}).status_code == 401
    # an app reads the requests its customers raised: not this one, raised by an admin as staff
    assert desk.client.get(f"{V2}/requests.json", headers=desk.header("customer_app")).json() == []
    assert desk.client.get(f"{V2}/requests/1.json", headers=desk.header("customer_app")).status_code == 404


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"description": "no code"}, "service_code"),
        ({"service_code": "graffiti"}, "service_code"),
        ({"service_code": "detected_customer_leak"}, "service_code"),
        ({"service_code": "leak_street", "lat": "51.5"}, "long"),
        ({"service_code": "leak_street", "description": "somewhere"}, "location"),
        ({"service_code": "leak_street", "lat": "91", "long": "0"}, "lat"),
        ({"service_code": "leak_street", "lat": "nan", "long": "0"}, "lat"),
        ({"service_code": "leak_street", "lat": "north", "long": "0"}, "lat"),
        ({"service_code": "leak_street", "address_string": "x", "email": "not an email"}, "email"),
        ({"service_code": "leak_street", "address_string": "x", "phone": "call me"}, "phone"),
        ({"service_code": "leak_street", "address_string": "x", "media_url": "javascript:alert(1)"}, "media_url"),
        ({"service_code": "leak_street", "address_string": "x", "description": "y" * 4001}, "description"),
        ({"service_code": "leak_street", "address_string": "x", "description": "a\x00b"}, "description"),
        ({"service_code": "leak_street", "address_string": "   "}, "address_string"),
        ({"service_code": "leak_street", "address_string": "x", "attribute[account]": "A-1"}, "attribute[account]"),
        ({"service_code": "billing_query", "attribute[account]": "A" * 101}, "attribute[account]"),
    ],
)
def test_bad_input_is_a_400_problem_naming_the_field_and_stores_nothing(
    desk: Desk, fields: dict[str, str], where: str
) -> None:
    answer = desk.post_form(fields)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert where in [e["location"] for e in answer.json()["errors"]], answer.json()
    assert _stored(desk) == (0, 0, 0)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("media_url", "javascript:alert(1)", "an http:// or https:// address, without blanks"),
        ("email", "not an email", "an email address: a name, one @ and a domain, without blanks"),
        ("phone", "call me", "a phone number: digits, and spaces, +, (, ), . or - between them"),
        ("first_name", "   ", "needs a character other than blanks, and no NUL character"),
    ],
)
def test_a_field_refused_by_its_pattern_is_told_in_words(desk: Desk, field: str, value: str, said: str) -> None:
    """Before, ``String should match pattern '^https?://[^\\s\\x00]+$'``: a regular expression, which
    the person behind a customers' app cannot read."""
    answer = desk.post_form({"service_code": "leak_street", "address_string": "x", field: value})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [{"location": field, "message": said}]
    assert answer.json()["detail"] == f"{field}: {said}"
    assert _stored(desk) == (0, 0, 0)


def test_a_field_given_twice_another_body_type_and_an_xml_url_are_refused(desk: Desk) -> None:
    twice = desk.client.post(
        f"{V2}/requests.json",
        content=f"service_code=complaint&service_code=no_water&address_id=7&api_key={desk.keys['customer_app']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400 and twice.json()["errors"][0]["location"] == "service_code"
    plain = desk.client.post(  # keyed: without a key, the answer is the key's 401 (as on every keyed route)
        f"{V2}/requests.json",
        content="service_code=complaint",
        headers={**desk.header("customer_app"), "Content-Type": "text/plain"},
    )
    assert plain.status_code == 415 and plain.headers["content-type"].startswith("application/problem+json")
    for path in ("services.xml", "requests.xml", "requests/1.xml", "services/complaint.xml"):
        xml = desk.client.get(f"{V2}/{path}", headers=desk.header("customer_care"))
        assert xml.status_code == 404, xml.text
        assert xml.json()["detail"].startswith("aquami serves Open311 as JSON only"), xml.json()
    posted = desk.client.post(f"{V2}/requests.xml", data={"service_code": "complaint"})
    assert posted.status_code == 404 and "JSON only" in posted.json()["detail"]
    assert _stored(desk) == (0, 0, 0)


@pytest.mark.parametrize(
    ("asked", "served"),
    [
        ("services", "services.json"),
        ("services.JSON", "services.json"),
        ("services/no_water", "services/no_water.json"),
        ("services/no_water.Json", "services/no_water.json"),
        ("requests", "requests.json"),
        ("requests/1", "requests/1.json"),
    ],
)
def test_a_resource_asked_without_its_json_ending_is_pointed_to_it(desk: Desk, asked: str, served: str) -> None:
    """Before, ``Open311 has no /open311/v2/services/no_water here``: true, and no help."""
    answer = desk.client.get(f"{V2}/{asked}")
    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"] == f"Open311's resources end in .json: ask for {V2}/{served}"


def test_a_path_open311_does_not_serve_in_any_form_is_said_so(desk: Desk) -> None:
    for asked in ("discovery.json", "tokens/abc.json", "services/no_water/extra", ""):
        answer = desk.client.get(f"{V2}/{asked}")
        assert answer.status_code == 404, answer.text
        assert answer.json()["detail"] == f"Open311 has no {V2}/{asked} here"


def test_requests_are_filtered_as_the_spec_says_and_detection_s_show_their_category(desk: Desk) -> None:
    care = desk.header("customer_care")
    burst = _burst_enquiry(desk)
    ids = {}
    for code in ("complaint", "water_quality"):
        answer = desk.post_form({"service_code": code, "address_id": "P-7"})
        ids[code] = int(answer.json()[0]["service_request_id"])
    desk.client.post(
        f"/enquiries/{ids['complaint']}/updates", json={"status": "closed", "note": "apologised"}, headers=care
    )

    def listed(**params: str) -> list[int]:
        answer = desk.client.get(f"{V2}/requests.json", params=params, headers=care)
        assert answer.status_code == 200, answer.text
        return [int(r["service_request_id"]) for r in answer.json()]

    assert listed() == [ids["water_quality"], ids["complaint"], burst]  # newest first
    assert listed(status="open") == [ids["water_quality"], burst]
    assert listed(status="closed") == [ids["complaint"]]
    assert listed(status="open,closed") == listed()
    assert listed(service_code="complaint,detected_customer_burst") == [ids["complaint"], burst]
    # service_request_id overrides every other filter
    assert listed(service_request_id=f"{burst},{ids['complaint']}", status="open") == [ids["complaint"], burst]
    ((detected),) = desk.client.get(f"{V2}/requests/{burst}.json", headers=care).json()
    assert (detected["service_code"], detected["service_name"]) == (
        "detected_customer_burst",
        "Customer Burst (detected)",
    )
    assert detected["description"].startswith("Suspected burst behind meter M1")
    assert (detected["address"], detected["lat"], detected["service_notice"]) == (None, None, None)
    assert detected["status_notes"].startswith("raised by alert")
    # the default window is the last 90 days; an older enquiry needs dates
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute("UPDATE enquiries SET opened_at = now() - interval '100 days' WHERE enquiry_id = %s", (burst,))
    assert burst not in listed()
    start = (datetime.now(UTC) - timedelta(days=101)).isoformat()
    assert listed(start_date=start) == [burst]
    for params, where in (
        ({"start_date": start, "end_date": datetime.now(UTC).isoformat()}, "end_date"),
        ({"start_date": datetime.now(UTC).isoformat(), "end_date": start}, "end_date"),
        ({"status": "pending"}, "status"),
        ({"service_request_id": "1,two"}, "service_request_id"),
    ):
        refused = desk.client.get(f"{V2}/requests.json", params=params, headers=care)
        assert refused.status_code == 400 and refused.json()["errors"][0]["location"] == where, refused.text
    naive = desk.client.get(f"{V2}/requests.json", params={"start_date": "2026-01-01T00:00:00"}, headers=care)
    assert naive.status_code == 422 and "start_date" in naive.json()["detail"]
    for unknown in ("999999", "abc"):
        assert desk.client.get(f"{V2}/requests/{unknown}.json", headers=care).status_code == 404


def test_an_attribute_a_service_requires_is_refused_missing_or_blank_and_nothing_stored(desk: Desk) -> None:
    """No service aquami ships requires one, but a utility may (``open311_service_attributes.required``):
    the definition says so, and a request without it, or with it blank, is a 400 naming it."""
    with psycopg.connect(desk.url) as conn:
        conn.execute(
            "UPDATE open311_service_attributes SET required = true WHERE service_code = 'billing_query' "
            "AND code = 'account'"
        )
    definition = desk.client.get(f"{V2}/services/billing_query.json").json()
    assert [(a["code"], a["required"]) for a in definition["attributes"]] == [("account", True)]
    for missing in ({}, {"attribute[account]": ""}):
        answer = desk.post_form({"service_code": "billing_query", "address_string": "1 Main St", **missing})
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"] == [{"location": "attribute[account]", "message": "required by this service"}]
    assert _stored(desk) == (0, 0, 0)
    assert desk.post_form({"service_code": "billing_query", "attribute[account]": "A-1"}).status_code == 200


@pytest.mark.parametrize("codes", ["", " ", "leak_street,", ",leak_street", "leak_street,,no_water", "leak_street, "])
def test_a_blank_service_code_filter_is_refused_not_answered_with_no_request(desk: Desk, codes: str) -> None:
    """``service_code=`` answered ``[]`` (200): customer care read that no request was raised."""
    assert desk.post_form({"service_code": "leak_street", "lat": "1", "long": "2"}).status_code == 200
    answer = desk.client.get(
        f"{V2}/requests.json", params={"service_code": codes}, headers=desk.header("customer_care")
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [
        {"location": "service_code", "message": "service codes, comma-separated, none blank"}
    ]


def test_several_ids_in_a_request_s_path_are_pointed_to_the_list_that_reads_several(desk: Desk) -> None:
    """``GET requests/1,2.json`` was told "service_request_id: at most 1 ids"."""
    answer = desk.client.get(f"{V2}/requests/1,2.json", headers=desk.header("customer_care"))
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [
        {
            "location": "service_request_id",
            "message": f"one id in the path; GET {V2}/requests.json?service_request_id=1,2 reads several",
        }
    ]


def test_at_most_1000_requests_are_answered(desk: Desk) -> None:
    with psycopg.connect(desk.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO enquiries (kind, category, source, subject, opened_at) "
            "SELECT 'enquiry', 'billing', 'staff', 'call ' || n, now() - n * interval '1 minute' "
            "FROM generate_series(1, 1001) n"
        )
    answer = desk.client.get(f"{V2}/requests.json", headers=desk.header("customer_care"))
    assert answer.status_code == 200
    assert len(answer.json()) == 1000 and answer.json()[0]["description"] == "call 1"
    assert {r["service_code"] for r in answer.json()} == {"billing_query"}  # filed under its category's service


_ANY = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
#: A character that shows: a letter, digit, punctuation or symbol, but the fillers that show nothing.
_SHOWN = st.characters(categories=["L", "N", "P", "S"], exclude_characters="\u115f\u1160\u3164\uffa0\u2800")


def _written(most: int) -> st.SearchStrategy[str]:
    """Any text of at most ``most`` characters, invisible ones and controls among them, with one that shows."""
    around = st.text(_ANY, max_size=min(150, (most - 1) // 2))
    return st.tuples(around, _SHOWN, around).map("".join)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(description=_written(4000), name=_written(100))
def test_a_posted_description_and_name_are_stored_and_answered_exactly_as_written(
    desk: Desk, description: str, name: str
) -> None:
    answer = desk.post_form(
        {"service_code": "complaint", "description": description, "first_name": name, "address_id": "P-1"}
    )
    assert answer.status_code == 200, answer.text
    enquiry_id = int(answer.json()[0]["service_request_id"])
    ((stored_description, stored_name),) = desk.rows(
        "SELECT description, first_name FROM open311_requests WHERE enquiry_id = %s", (enquiry_id,)
    )
    assert (stored_description, stored_name) == (description, name)
    ((request),) = desk.client.get(f"{V2}/requests/{enquiry_id}.json", headers=desk.header("customer_care")).json()
    assert request["description"] == description


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    code=st.one_of(
        st.text(max_size=70),
        st.sampled_from(["detected_customer_leak", "detected_main_burst", "LEAK_STREET", " complaint", "complaint "]),
    )
)
def test_a_code_that_is_no_service_people_raise_never_stores_a_row(desk: Desk, code: str) -> None:
    with psycopg.connect(desk.url) as conn:
        if conn.execute(
            "SELECT 1 FROM open311_services WHERE service_code = %s", (code.replace("\x00", ""),)
        ).fetchone():
            return  # a real code, by chance
    answer = desk.post_form({"service_code": code, "address_id": "P-1", "description": "water everywhere"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["location"] in ("service_code", "body")
    assert _stored(desk) == (0, 0, 0)


_EDGES = st.sampled_from(
    [datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC), datetime(1, 3, 1, tzinfo=UTC),
     datetime(9999, 10, 15, tzinfo=UTC)]
)  # fmt: skip


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.none() | _EDGES | st.datetimes(timezones=st.just(UTC)),
    end=st.none() | _EDGES | st.datetimes(timezones=st.just(UTC)),
)
def test_dates_at_the_calendar_s_edges_are_a_window_cut_there_or_a_400_never_a_500(
    desk: Desk, start: datetime | None, end: datetime | None
) -> None:
    """end_date=0001-01-01 or start_date=9999-12-31 was a 500: the 90 days before or after
    overflowed. The window is cut at the calendar's first or last instant."""
    params = {name: moment.isoformat() for name, moment in (("start_date", start), ("end_date", end)) if moment}
    answer = desk.client.get(f"{V2}/requests.json", params=params, headers=desk.header("customer_care"))
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert start is not None and end is not None and answer.json()["errors"][0]["location"] == "end_date"


_JSON_FIELDS = {
    "service_code": '"billing_query"', "description": '"bill doubled"', "lat": "-33.8", "long": "151.2",
    "address_string": '"1 High St"', "email": '"pat@example.org"', "phone": '"5550 1234"', "api_key": '"aqk_x.y"',
}  # fmt: skip


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(twice=st.sampled_from([*_JSON_FIELDS, "attribute"]), second=st.sampled_from(['"x"', "1", "null", '""']))
def test_a_json_field_given_twice_is_refused_as_the_form_s_is(desk: Desk, twice: str, second: str) -> None:
    """json.loads kept the last silently ('description' twice stored the second); the form refused it."""
    # the body's key is a valid one (the key is asked first: an invalid one is a 401); given twice, no
    # key is told from the body, and the header's signs the request
    key = json.dumps(desk.keys["customer_app"])
    fields = [f'"{name}": {key if name == "api_key" else value}' for name, value in _JSON_FIELDS.items()]
    fields.append('"attribute": {"account": "A-1"}')
    fields.append(f'"{twice}": {second}')
    headers = {**desk.header("customer_app"), "Content-Type": "application/json"}
    answer = desk.client.post(f"{V2}/requests.json", content="{" + ", ".join(fields) + "}", headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [{"location": twice, "message": "given more than once"}]
    nested = '{"service_code": "billing_query", "attribute": {"account": "A-1", "account": "A-2"}}'
    answer = desk.client.post(f"{V2}/requests.json", content=nested, headers=headers)
    assert answer.status_code == 400 and answer.json()["errors"][0]["location"] == "attribute[account]"
    assert _stored(desk) == (0, 0, 0)


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lat=st.booleans() | st.floats(-90, 90), long=st.booleans() | st.floats(-180, 180))
def test_json_s_true_and_false_are_no_coordinates(desk: Desk, lat: bool | float, long: bool | float) -> None:
    """'lat': true, 'long': false were stored as 1.0 and 0.0; a form cannot send a boolean at all."""
    body = {"service_code": "leak_street", "lat": lat, "long": long}
    before = _stored(desk)
    answer = desk.client.post(f"{V2}/requests.json", json=body, headers=desk.header("customer_app"))
    refused = [name for name, value in (("lat", lat), ("long", long)) if isinstance(value, bool)]
    if refused:
        assert answer.status_code == 400, answer.text
        assert [e["location"] for e in answer.json()["errors"]] == refused
        assert _stored(desk) == before
    else:
        assert answer.status_code == 200, answer.text


NOT_FINITE = "a coordinate is a finite number, not NaN or infinity"


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["lat", "long"]),
    text=st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", " inf ", "1e400", "-1e999"]),
)
def test_a_coordinate_that_is_no_finite_number_is_told_so(desk: Desk, which: str, text: str) -> None:
    """A form's ``lat=nan`` was told "Input should be greater than or equal to -90", which it is
    not about: an app's developer looked for a sign error. Nothing is stored either way."""
    fields = {"service_code": "leak_street", "lat": "1", "long": "2", which: text}
    answer = desk.post_form(fields)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [{"location": which, "message": NOT_FINITE}]
    assert _stored(desk) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"service_code": "leak_street", "lat": NaN, "long": 2}', NOT_FINITE),
        (b'{"service_code": "leak_street", "lat": 1, "long": -Infinity}', NOT_FINITE),
        (b'{"service_code": "leak_street", "lat": true, "long": 2}', "a coordinate is a number, not true or false"),
    ],
)
def test_a_json_coordinate_s_problem_is_said_in_its_own_words(desk: Desk, body: bytes, said: str) -> None:
    """Before, ``Value error, a coordinate is a number, not true or false``: pydantic's prefix,
    which names its own exception class, not the request's problem."""
    headers = {**desk.header("customer_app"), "Content-Type": "application/json"}
    answer = desk.client.post(f"{V2}/requests.json", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert error["message"] == said
    assert answer.json()["detail"] == f"{error['location']}: {said}"
    assert _stored(desk) == (0, 0, 0)


def test_a_date_that_is_no_time_is_told_so_without_pydantic_s_prefix(desk: Desk) -> None:
    """An Open311 client's ``start_date=2026-12-01`` (a date, where the spec asks a datetime) was told
    ``Value error, '2026-12-01' is no ISO 8601 time``; the README quotes the words alone."""
    headers = desk.header("customer_care")
    answer = desk.client.get(f"{V2}/requests.json", params={"start_date": "2026-12-01"}, headers=headers)
    assert answer.status_code == 422, answer.text
    said = "'2026-12-01' is no ISO 8601 time"
    assert answer.json()["errors"] == [{"location": "query/start_date", "message": said}]
    assert answer.json()["detail"] == f"query/start_date: {said}"


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.fixed_dictionaries(
        {},
        optional={
            name: st.sampled_from(["yesterday", "2026-01-01", "1700000000", "2026-13-01T00:00:00Z", ""])
            | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)  # a URL is UTF-8
            for name in ("start_date", "end_date", "service_request_id", "status")
        },
    )
)
def test_reading_requests_asks_the_key_before_the_query_as_every_role_protected_route_does(
    desk: Desk, query: dict[str, str]
) -> None:
    """Before, GET requests.json without a key and with a bad date was a 422 saying what a date must be."""
    path = f"{V2}/requests.json"
    for headers in ({}, {"Authorization": "Bearer aqk_nope.nope"}, {"X-API-Key": ""}):
        answer = desk.client.get(path, params=query, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["content-type"] == "application/problem+json"
    assert desk.client.get(path, params=query, headers=desk.header("reader")).status_code == 403


def test_a_keyed_reader_s_bad_query_is_answered_as_before(desk: Desk) -> None:
    for query, status in (({"start_date": "yesterday"}, 422), ({"status": "lost"}, 400), ({}, 200)):
        answer = desk.client.get(f"{V2}/requests.json", params=query, headers=desk.header("customer_care"))
        assert answer.status_code == status, answer.text


NOT_READ_IN_THE_ADDRESS = "an api_key in the address is not read: addresses are logged"


@pytest.mark.parametrize("role", ["customer_care", "admin"])
def test_a_reader_s_valid_key_put_in_the_address_is_told_it_is_not_read_there(desk: Desk, role: str) -> None:
    """Before, a 401 "a valid API key is required (the api_key field, or Authorization: Bearer <key>)"
    for a valid key in ``?api_key=``: no word that the address is not read, and a GET has no field."""
    for path in (f"{V2}/requests.json", f"{V2}/requests/1.json"):
        answer = desk.client.get(path, params={"api_key": desk.keys[role]})
        assert answer.status_code == 401, answer.text
        assert answer.json()["detail"] == (
            f"a valid API key is required (Authorization: Bearer <key>; {NOT_READ_IN_THE_ADDRESS})"
        )


def test_an_app_s_valid_key_in_the_address_or_a_multipart_form_is_told_where_it_is_read(desk: Desk) -> None:
    """Clients attaching a photo post multipart/form-data, and some put the key in the address: both
    were told only "a valid API key is required", for a valid key; nothing is stored either way."""
    fields = {"service_code": "leak_street", "lat": "1", "long": "2"}
    in_the_address = desk.client.post(f"{V2}/requests.json", params={"api_key": desk.keys["customer_app"]}, data=fields)
    assert in_the_address.status_code == 401, in_the_address.text
    assert NOT_READ_IN_THE_ADDRESS in in_the_address.json()["detail"]
    multipart = desk.client.post(
        f"{V2}/requests.json",
        data={**fields, "api_key": desk.keys["customer_app"]},
        files={"media": ("leak.jpg", b"\xff\xd8\xff", "image/jpeg")},
    )
    assert multipart.status_code == 401, multipart.text
    assert multipart.json()["detail"] == (
        "a valid API key is required (the api_key field, or Authorization: Bearer <key>; a multipart/form-data "
        "body is not read: post the form as application/x-www-form-urlencoded, a photo as media_url)"
    )
    assert _stored(desk) == (0, 0, 0)
    without = desk.client.post(f"{V2}/requests.json", data=fields)  # a key nowhere: the plain words
    assert without.json()["detail"] == "a valid API key is required (the api_key field, or Authorization: Bearer <key>)"


#: Bodies a raise request cannot be made of: (Content-Type, body).
BAD_BODIES = [
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2]"),
    ("application/json", b'{"service_code": "complaint", "service_code": "leak_street"}'),
    ("application/json", b'{"service_code": "complaint", "attribute": [1]}'),
    ("application/x-www-form-urlencoded", b"service_code=complaint&description=\xff\xfe"),
    ("application/x-www-form-urlencoded", b"service_code=complaint&service_code=no_water"),
    ("application/x-www-form-urlencoded", "&".join(f"f{i}=x" for i in range(101)).encode()),
    ("text/plain", b"service_code=complaint"),
    ("", b"{}"),
]


@pytest.mark.parametrize(("media_type", "body"), BAD_BODIES)
def test_raising_a_request_asks_the_key_before_the_body_as_every_role_protected_route_does(
    desk: Desk, media_type: str, body: bytes
) -> None:
    """Before, a POST without a key and with a body it could not read was a 400 (or 415) saying what
    was wrong with the body: the body was read, and its problems said, before the key was asked."""
    path = f"{V2}/requests.json"
    for headers in ({}, {"Authorization": "Bearer aqk_nope.nope"}, {"X-API-Key": ""}):
        answer = desk.client.post(path, content=body, headers={**headers, "Content-Type": media_type})
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["content-type"] == "application/problem+json"
    for role in ("reader", "billing"):
        answer = desk.client.post(path, content=body, headers={**desk.header(role), "Content-Type": media_type})
        assert answer.status_code == 403, answer.text
    keyed = desk.client.post(path, content=body, headers={**desk.header("customer_app"), "Content-Type": media_type})
    assert keyed.status_code == (415 if media_type in ("text/plain", "") else 400), keyed.text
    assert _stored(desk) == (0, 0, 0)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    media_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
    body=st.binary(max_size=60) | st.text(max_size=60).map(str.encode),
)
def test_any_body_without_a_key_is_a_401_and_stores_nothing(desk: Desk, media_type: str, body: bytes) -> None:
    """Whatever the body holds, short of a valid key in it, the answer is the key's 401."""
    if b"api_key" in body:
        return  # (a key in the body is the form's way: not "without a key")
    answer = desk.client.post(f"{V2}/requests.json", content=body, headers={"Content-Type": media_type})
    assert answer.status_code == 401, answer.text
    assert _stored(desk) == (0, 0, 0)


def test_a_key_in_a_body_with_a_bad_field_is_the_key_the_field_s_problem_then_said(desk: Desk) -> None:
    """A key given in the form (GeoReport v2's way) still signs a body another field of which is wrong:
    the answer names that field, as before, not the key."""
    path = f"{V2}/requests.json"
    twice = f"api_key={desk.keys['customer_app']}&service_code=complaint&service_code=no_water".encode()
    answer = desk.client.post(path, content=twice, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [{"location": "service_code", "message": "given more than once"}]
    json_body = {"api_key": desk.keys["customer_app"], "service_code": "complaint", "attribute": [1]}
    answer = desk.client.post(path, json=json_body)
    assert answer.status_code == 400 and answer.json()["errors"][0]["location"] == "attribute", answer.text
    form_key = {"api_key": desk.keys["reader"], "service_code": "complaint", "service_code ": "x"}
    assert desk.client.post(path, data=form_key).status_code == 403
    assert _stored(desk) == (0, 0, 0)


def test_a_form_field_named_like_an_attribute_with_a_line_break_after_is_no_attribute(desk: Desk) -> None:
    """The name's pattern ended in "$", which Python's re matches before a final line break too:
    ``attribute[account]%0A`` was the account attribute, so given beside ``attribute[account]`` it
    replaced it unseen (the form's field-twice refusal went by the names as written). Now it is a
    field of no known name, ignored as any such field is."""
    form = "service_code=billing_query&attribute[account]=A-1&attribute[account]%0A=A-2&address_id=P-1"
    headers = {**desk.header("customer_app"), "Content-Type": "application/x-www-form-urlencoded"}
    answer = desk.client.post(f"{V2}/requests.json", content=form, headers=headers)
    assert answer.status_code == 200, answer.text
    assert desk.rows("SELECT attributes FROM open311_requests") == [({"account": "A-1"},)]
