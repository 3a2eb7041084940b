"""A care agent finds a customer's meter by its id, or part of it (/care/meters?meter_id=): an exact id
opens the meter's page, otherwise the meters whose id contains the words typed (any case) are listed,
linked, and an account number lists the meters fitted now at its service points. Before, /care/meters
was the "no page at this address" 404, and the only ways to a meter were paging the meters list 500 at
a time or typing its page's address."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters
from server.web.meter_search import MATCHES_SHOWN

#: Ids with the characters a LIKE pattern gives a meaning to, which the search takes as themselves.
METERS = ["WM-00003", "WM-00030", "WM-00317", "wm-00317-b", "A_B", "AXB", "50%", "50X", "C\\D", "K/L 2"]
LINK = re.compile(r'<a href="/care/meters/([^"]+)">([^<]+)</a>')


@pytest.fixture
def fleet(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, role, [role]) for role in ("customer_care", "reader", "billing")}
        register_meters(conn, [(meter_id, "D1", "customer") for meter_id in METERS])
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys


def _find(client: TestClient, key: str, typed: str) -> httpx.Response:
    """The page's form, sent with ``typed``, its answer followed."""
    return client.get("/care/meters", params={"meter_id": typed}, headers={"Authorization": f"Bearer {key}"})


def _listed(text: str) -> list[str]:
    return [html.unescape(shown) for _, shown in LINK.findall(text)]


@pytest.mark.parametrize("typed", ["WM-00317", "  WM-00317 ", "K/L 2", "50%"])
def test_an_exact_id_opens_the_meters_page(fleet, typed: str) -> None:
    client, _, keys = fleet
    found = client.get(
        "/care/meters", params={"meter_id": typed}, headers={"Authorization": f"Bearer {keys['customer_care']}"},
        follow_redirects=False,
    )  # fmt: skip
    assert found.status_code == 303
    assert found.headers["location"] == "/care/meters/" + quote(typed.strip(), safe="")
    opened = client.get(found.headers["location"], headers={"Authorization": f"Bearer {keys['customer_care']}"})
    assert opened.status_code == 200 and f"Meter {html.escape(typed.strip())}" in opened.text


def test_part_of_an_id_in_any_case_lists_the_meters_that_contain_it(fleet) -> None:
    client, _, keys = fleet
    found = _find(client, keys["reader"], "m-0031")
    assert found.status_code == 200
    assert _listed(found.text) == ["WM-00317", "wm-00317-b"]
    assert "2 meters whose id contains “m-0031”" in found.text
    assert '<a href="/care/meters/WM-00317">WM-00317</a>' in found.text


@pytest.mark.parametrize(("typed", "listed"), [("_", ["A_B"]), ("%", ["50%"]), ("\\", ["C\\D"]), ("/", ["K/L 2"])])
def test_the_characters_a_pattern_means_something_by_are_taken_as_themselves(
    fleet, typed: str, listed: list[str]
) -> None:
    client, _, keys = fleet
    found = _find(client, keys["reader"], typed)
    assert _listed(found.text) == listed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(typed=st.text(alphabet="wWmM-0137_%\\bABXDK/ 2", min_size=1, max_size=6))
def test_the_list_is_every_meter_whose_id_contains_what_was_typed(fleet, typed: str) -> None:
    client, _, keys = fleet
    headers = {"Authorization": f"Bearer {keys['reader']}"}
    found = client.get("/care/meters", params={"meter_id": typed}, headers=headers, follow_redirects=False)
    wanted = typed.strip()
    if not wanted:
        assert found.status_code == 200 and _listed(found.text) == []
    elif wanted in METERS:
        assert found.status_code == 303
    else:
        assert found.status_code == 200
        assert _listed(found.text) == sorted(m for m in METERS if wanted.lower() in m.lower())


def test_no_meter_found_says_so_and_what_to_check(fleet) -> None:
    client, _, keys = fleet
    found = _find(client, keys["reader"], "ZZ-9")
    assert found.status_code == 200 and _listed(found.text) == []
    said = "No meter's id is or contains “ZZ-9”, and no account of that number has a meter fitted now. Check it"
    assert said in found.text


def test_more_matches_than_shown_are_said(fleet) -> None:
    client, conn, keys = fleet
    register_meters(conn, [(f"BLOCK-{n:03}", "D1", "customer") for n in range(MATCHES_SHOWN + 5)])
    found = _find(client, keys["reader"], "block")
    assert _listed(found.text) == [f"BLOCK-{n:03}" for n in range(MATCHES_SHOWN)]
    assert (
        f"The first {MATCHES_SHOWN} meters whose id contains “block” (there are more: type more of the id)"
        in found.text
    )


def test_the_form_is_a_page_of_its_own_linked_from_the_meters_page_and_the_care_desk(fleet) -> None:
    client, _, keys = fleet
    headers = {"Authorization": f"Bearer {keys['customer_care']}"}
    empty = client.get("/care/meters", headers=headers)
    assert empty.status_code == 200 and _listed(empty.text) == []
    assert re.search(r'<label for="meter-id">[^<]+<input id="meter-id" name="meter_id"', empty.text)  # labelled
    assert 'http-equiv="refresh"' not in empty.text  # nothing wipes an id half typed
    assert '<a href="/care/meters">' in client.get("/", headers=headers).text
    assert '<a href="/care/meters">' in client.get("/care/enquiries", headers=headers).text


def test_a_key_that_may_not_see_meters_gets_the_sign_in_form(fleet) -> None:
    client, _, keys = fleet
    assert client.get("/care/meters", params={"meter_id": "WM"}).status_code == 401
    refused = _find(client, keys["billing"], "WM")
    assert refused.status_code == 403 and "WM-00003" not in refused.text


def test_an_address_the_page_does_not_take_is_said(fleet) -> None:
    client, _, keys = fleet
    said = client.get("/care/meters", params={"meter": "WM"}, headers={"Authorization": f"Bearer {keys['reader']}"})
    assert said.status_code == 400 and "did you mean meter_id?" in said.text


def test_a_nul_is_said_not_searched(fleet) -> None:
    client, _, keys = fleet
    said = _find(client, keys["reader"], "WM\x00")
    assert said.status_code == 400


def test_an_account_number_lists_the_meters_fitted_at_its_service_points_now(fleet) -> None:
    """ACC-7 holds SP1 (WM-00003) and SP2 (WM-00030) now; it held SP3 (WM-00317) until last month."""
    client, conn, keys = fleet
    conn.execute(
        "INSERT INTO service_points (service_point_id, dma) VALUES ('SP1', 'D1'), ('SP2', 'D1'), ('SP3', 'D1')"
    )
    conn.execute("INSERT INTO accounts (account_id, name) VALUES ('ACC-7', 'Sam Tenant')")
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES "
        "('SP1', 'WM-00003', now() - interval '1 year'), ('SP2', 'WM-00030', now() - interval '1 year'), "
        "('SP3', 'WM-00317', now() - interval '1 year')"
    )
    conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) VALUES "
        "('ACC-7', 'SP1', now() - interval '1 year', NULL), ('ACC-7', 'SP2', now() - interval '1 day', NULL), "
        "('ACC-7', 'SP3', now() - interval '1 year', now() - interval '1 month')"
    )
    found = _find(client, keys["customer_care"], " ACC-7 ")
    assert found.status_code == 200 and "Account ACC-7's meters now (at the service points it holds)" in found.text
    assert _listed(found.text) == ["WM-00003", "WM-00030"]
    assert "No meter&#39;s id" not in found.text and "No meter's id" not in found.text


@pytest.mark.parametrize(("typed", "query"), [("WM-0031", "WM-0031"), ("K/L 3", "K/L%203"), ("50&x", "50%26x")])
def test_an_unknown_meters_page_offers_to_find_one_like_it(fleet, typed: str, query: str) -> None:
    """A mistyped address (or a meter removed since) answers 404 saying so, with a link to the search."""
    client, _, keys = fleet
    page = client.get(f"/care/meters/{quote(typed, safe='')}", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert page.status_code == 404
    link = f'<a href="/care/meters?meter_id={html.escape(query)}">'
    assert f"{link}Find a meter whose id contains “{html.escape(typed)}”</a>" in page.text
    found = client.get(f"/care/meters?meter_id={query}", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert found.status_code == 200 and f"“{html.escape(typed)}”" in found.text


def _accounts_holding(conn: psycopg.Connection, held: dict[str, str]) -> None:
    """Each account of ``held`` holds, since a year ago, a service point where the meter given is fitted."""
    for n, (account, meter_id) in enumerate(held.items()):
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES (%s, 'D1')", (f"SP{n}",))
        conn.execute("INSERT INTO accounts (account_id, name) VALUES (%s, 'Sam Tenant')", (account,))
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) "
            "VALUES (%s, %s, now() - interval '1 year')",
            (f"SP{n}", meter_id),
        )
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "VALUES (%s, %s, now() - interval '1 year')",
            (account, f"SP{n}"),
        )


@pytest.mark.parametrize("typed", ["acc-7", "Acc-7", "ACC-7"])
def test_an_account_number_is_found_in_any_case_as_a_meter_id_is(fleet, typed: str) -> None:
    """ "wm-317" found WM-00317, but "acc-7" found nothing for ACC-7: a caller reading their number
    out, an agent typing it in lower case, was told no account of that number had a meter."""
    client, conn, keys = fleet
    _accounts_holding(conn, {"ACC-7": "WM-00003"})
    found = _find(client, keys["customer_care"], typed)
    assert "Account ACC-7's meter now (at the service points it holds)" in found.text  # as stored
    assert _listed(found.text) == ["WM-00003"]


def test_two_accounts_differing_only_in_case_are_both_listed_each_under_its_number(fleet) -> None:
    """Accounts are compared exactly elsewhere (billing, the enquiries' filter): a utility whose
    numbers are case-significant has two accounts here, and the page says which meter is whose."""
    client, conn, keys = fleet
    _accounts_holding(conn, {"ab-1": "WM-00030", "AB-1": "WM-00003"})
    found = _find(client, keys["customer_care"], "Ab-1")
    said = re.search(r"Accounts (\S+) and (\S+): numbers that differ only in case, each its own account\.", found.text)
    assert said is not None and {said[1], said[2]} == {"AB-1", "ab-1"}, found.text  # in the database's order
    rows = re.findall(r'<tr><td>([^<]+)</td><td><a href="/care/meters/[^"]+">([^<]+)</a>', found.text)
    assert sorted(rows) == [("AB-1", "WM-00003"), ("ab-1", "WM-00030")]
