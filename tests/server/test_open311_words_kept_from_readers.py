"""What a person raised an Open311 request with is shown to customer care only (server.open311,
server migration 0051). Before, an enquiry's subject was the service's name and the first 120
characters of the description, and its first update quoted an account reference that matched no
account: a reader key read 'Billing query: Jane Doe, 0412 345 678, flat 4/12 Smith St: my bill is
wrong since my husband left' on GET /enquiries, the enquiry's page and the care desk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import migrate as migrate_module
from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key
from tests.server.test_open311 import Desk as Open311Desk

V2 = "/open311/v2"
WORDS = "Jane Doe, 0412 345 678, flat 4/12 Smith St: my bill is wrong since my husband left"
UNMATCHED = "4417-1234-5678-9113"
NO_ACCOUNT = "an account reference was given that matches no account (see the request's details)"
NO_METER = "a meter reference was given that matches no meter (see the request's details)"


class Desk(Open311Desk):
    def raise_one(self, fields: dict[str, str]) -> int:
        answer = self.post_form(fields)
        assert answer.status_code == 200, answer.text
        return int(answer.json()[0]["service_request_id"])

    def enquiry(self, enquiry_id: int, role: str) -> dict[str, Any]:
        answer = self.client.get(f"/enquiries/{enquiry_id}", headers=self.header(role))
        assert answer.status_code == 200, answer.text
        return answer.json()

    def page(self, path: str, role: str) -> str:
        self.client.cookies.set(SESSION_COOKIE, self.keys[role])
        try:
            answer = self.client.get(path)
        finally:
            self.client.cookies.clear()
        assert answer.status_code == 200, answer.text
        return answer.text


def _keys(url: str) -> dict[str, str]:
    roles = ("customer_app", "customer_care", "reader", "meterization")
    with psycopg.connect(url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"k {role}", [role]) for role in roles}
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'Household one')")
        conn.execute("INSERT INTO meters (meter_id, dma, registered) VALUES ('M1', 'D1', true)")
    return keys


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    keys = _keys(migrated_database_url)
    with TestClient(create_app(migrated_database_url)) as client:
        yield Desk(client, migrated_database_url, keys)


def test_a_reader_sees_none_of_the_words_a_request_was_raised_with(desk: Desk) -> None:
    quoted = desk.raise_one({"service_code": "billing_query", "description": WORDS, "attribute[account]": "A-1"})
    unmatched = desk.raise_one({"service_code": "billing_query", "attribute[account]": UNMATCHED})
    for role in ("reader", "meterization"):
        enquiry = desk.enquiry(quoted, role)
        assert enquiry["subject"] == "Billing query (account A-1)"
        assert [u["note"] for u in enquiry["updates"]] == ["raised through Open311 (customer)"]
        assert [u["note"] for u in desk.enquiry(unmatched, role)["updates"]] == [
            f"raised through Open311 (customer); {NO_ACCOUNT}"
        ]
        listed = desk.client.get("/enquiries", headers=desk.header(role))
        assert listed.status_code == 200 and "0412" not in listed.text and UNMATCHED not in listed.text
        for path in (f"/care/enquiries/{quoted}", f"/care/enquiries/{unmatched}", "/care/enquiries"):
            shown = desk.page(path, role)
            assert "0412 345 678" not in shown and "Jane Doe" not in shown and UNMATCHED not in shown, path
    # customer care is shown what was given, as before
    care = desk.enquiry(unmatched, "customer_care")
    assert care["open311"]["attribute"] == {"account": UNMATCHED}
    assert desk.enquiry(quoted, "customer_care")["open311"]["description"] == WORDS
    assert WORDS in desk.page(f"/care/enquiries/{quoted}", "customer_care")


def test_open311_s_get_shows_no_description_for_a_request_raised_without_one(desk: Desk) -> None:
    enquiry_id = desk.raise_one({"service_code": "no_water", "attribute[account]": "A-1", "attribute[meter]": "M1"})
    assert desk.enquiry(enquiry_id, "reader")["subject"] == "No water or low pressure (account A-1, meter M1)"
    read = desk.client.get(f"{V2}/requests/{enquiry_id}.json", headers=desk.header("customer_care"))
    assert read.status_code == 200, read.text
    assert read.json()[0]["description"] is None
    assert "A-1" not in read.text and "M1" not in read.text  # no account or meter on a GET


_REFERENCE = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    description=st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"]), max_size=200)),
    account=st.one_of(st.none(), st.just("A-1"), _REFERENCE),
    meter=st.one_of(st.none(), st.just("M1"), _REFERENCE),
)
def test_the_subject_and_first_update_are_the_service_and_what_was_linked_whatever_was_written(
    desk: Desk, description: str | None, account: str | None, meter: str | None
) -> None:
    fields = {"service_code": "no_water", "address_id": "P-1"}
    given = {"description": description, "attribute[account]": account, "attribute[meter]": meter}
    answer = desk.client.post(
        f"{V2}/requests.json",
        data={**fields, **{k: v for k, v in given.items() if v is not None}, "api_key": desk.keys["customer_app"]},
    )
    if answer.status_code == 400:
        return  # a NUL, or a reference the intake refuses: nothing is stored
    assert answer.status_code == 200, answer.text
    enquiry = desk.enquiry(int(answer.json()[0]["service_request_id"]), "reader")
    linked = [f"account {account}" if account == "A-1" else "", f"meter {meter}" if meter == "M1" else ""]
    shown = ", ".join(part for part in linked if part)
    assert enquiry["subject"] == "No water or low pressure" + (f" ({shown})" if shown else "")
    said = ["raised through Open311 (customer)"]
    said += [NO_ACCOUNT] if account not in (None, "A-1") else []
    said += [NO_METER] if meter not in (None, "M1") else []
    assert [u["note"] for u in enquiry["updates"]] == ["; ".join(said)]


def test_migration_0051_rewrites_the_enquiries_raised_before(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = migrate_module.migration_files()
    monkeypatch.setattr(
        migrate_module, "migration_files", lambda: [f for f in every if not f[0].startswith("server/0051_")]
    )
    migrate_module.migrate(database_url)
    keys = _keys(database_url)
    raised = [  # as 0043's code wrote them: (source, subject, account_id, meter_id, attributes, first note)
        ("customer", f"Billing query: {WORDS[:119]}…", "A-1", None, '{"account": "A-1"}',
         "raised through Open311 (customer)"),
        ("staff", "No water or low pressure: no water", None, "M1", '{"account": "O\'Neil 7", "meter": "M1"}',
         "raised through Open311 (staff); account reference \"O'Neil 7\" matches no account"),
        ("customer", "Meter problem", None, None, '{"account": "9", "meter": "M-9; x"}',
         "raised through Open311 (customer); account reference '9' matches no account; "
         "meter reference 'M-9; x' matches no meter"),
        ("customer", "Complaint", None, None, "{}", "raised through Open311 (customer)"),
    ]  # fmt: skip
    codes = {"Billing": "billing_query", "No water": "no_water", "Meter": "meter_problem", "Complaint": "complaint"}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for source, subject, account_id, meter_id, attributes, note in raised:
            code = next(c for prefix, c in codes.items() if subject.startswith(prefix))
            (enquiry_id,) = conn.execute(  # type: ignore[misc]
                "INSERT INTO enquiries (kind, category, source, subject, account_id, meter_id) "
                "SELECT kind, category, %s, %s, %s, %s FROM open311_services WHERE service_code = %s "
                "RETURNING enquiry_id",
                (source, subject, account_id, meter_id, code),
            ).fetchone()
            conn.execute(
                "INSERT INTO open311_requests (enquiry_id, service_code, description, attributes, raised_by) "
                "VALUES (%s, %s, %s, %s, 'app')",
                (enquiry_id, code, WORDS, attributes),
            )
            conn.execute(
                "INSERT INTO enquiry_updates (enquiry_id, by, note) VALUES (%s, 'app', %s)", (enquiry_id, note)
            )
            conn.execute(
                "INSERT INTO enquiry_updates (enquiry_id, by, note) VALUES (%s, 'alice', 'raised through Open311 (x)')",
                (enquiry_id,),
            )
        conn.execute(
            "INSERT INTO enquiries (kind, category, source, subject) VALUES ('complaint', 'x', 'staff', 'rude')"
        )
        before = conn.execute("SELECT enquiry_id, updated_at FROM enquiries ORDER BY 1").fetchall()
        monkeypatch.setattr(migrate_module, "migration_files", lambda: every)
        assert [name for name in migrate_module.migrate(database_url) if name.startswith("server/0051_")]
        subjects = conn.execute("SELECT subject FROM enquiries ORDER BY enquiry_id").fetchall()
        assert [s for (s,) in subjects] == [
            "Billing query (account A-1)", "No water or low pressure (meter M1)", "Meter problem", "Complaint", "rude",
        ]  # fmt: skip
        notes = conn.execute("SELECT note FROM enquiry_updates ORDER BY update_id").fetchall()
        assert [n for (n,) in notes] == [
            "raised through Open311 (customer)", "raised through Open311 (x)",
            f"raised through Open311 (staff); {NO_ACCOUNT}", "raised through Open311 (x)",
            f"raised through Open311 (customer); {NO_ACCOUNT}; {NO_METER}", "raised through Open311 (x)",
            "raised through Open311 (customer)", "raised through Open311 (x)",
        ]  # fmt: skip
        assert conn.execute("SELECT enquiry_id, updated_at FROM enquiries ORDER BY 1").fetchall() == before
        assert {d for (d,) in conn.execute("SELECT description FROM open311_requests")} == {WORDS}
    with TestClient(create_app(database_url)) as client:
        shown = client.get("/enquiries", headers={"Authorization": f"Bearer {keys['reader']}"})
        assert shown.status_code == 200 and "Jane" not in shown.text and "Neil" not in shown.text
