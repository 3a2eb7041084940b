"""A signed-in page's address with a query parameter the page does not take, or one given twice, is
said on the page (400), not ignored (server.web.pages.address_not_taken): the care desk filtered by
``meter_id`` (the API's name, where the desk took ``meter``) listed every enquiry under a page that
looked filtered. The desk takes ``meter_id`` now, as the API does, and ``meter`` still."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters
from tests.server.test_web_care_desk import ROW_LINK, T0, _insert

DESK_TAKES = ("status", "priority", "category", "source", "meter_id", "meter", "account", "after", "since")
FORM = re.compile(r'<form class="filters" method="get" action="/care/enquiries">(.*?)</form>', re.S)


Site = tuple[TestClient, psycopg.Connection, dict[str, str]]


@pytest.fixture
def site(migrated_database_url: str) -> Iterator[Site]:
    """A client, a connection, and a reader's headers (the pages take the API's header as the cookie)."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        reader = {"Authorization": f"Bearer {create_api_key(conn, 'rita', ['reader'])}"}
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, reader


def _two_meters_enquiries(site: Site) -> tuple[int, int]:
    """An enquiry naming M1 and one naming M2; their ids."""
    _, conn, _ = site
    first, second = _insert(
        conn, [("open", "high", "staff", "billing", T0), ("open", "high", "staff", "billing", T0 + timedelta(hours=1))]
    )
    conn.execute("UPDATE enquiries SET meter_id = 'M1' WHERE enquiry_id = %s", (first,))
    conn.execute("UPDATE enquiries SET meter_id = 'M2' WHERE enquiry_id = %s", (second,))
    return first, second


def _rows(page: str) -> list[int]:
    return [int(n) for n in ROW_LINK.findall(page)]


def test_the_desk_takes_the_api_s_meter_id_and_its_older_meter(site: Site) -> None:
    """Before, ``?meter_id=M1`` (the API's GET /enquiries name) listed both meters' enquiries, 200."""
    client, _, reader = site
    m1, m2 = _two_meters_enquiries(site)
    for asked in (
        {"meter_id": "M1"},
        {"meter": "M1"},
        {"meter_id": "M1", "meter": "M1"},
        {"meter_id": "M1", "meter": ""},
    ):
        page = client.get("/care/enquiries", params=asked, headers=reader)
        assert page.status_code == 200 and _rows(page.text) == [m1], (asked, page.text)
        assert '<input name="meter_id" value="M1"' in page.text  # the form says it by the API's name
    assert _rows(client.get("/care/enquiries", headers=reader).text) == [m2, m1]
    both = client.get("/care/enquiries", params={"meter_id": "M1", "meter": "M2"}, headers=reader)
    assert both.status_code == 400 and _rows(both.text) == []
    assert "The address names two meters, meter_id &#39;M1&#39; and meter &#39;M2&#39;: give one" in both.text


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("metre_id=M1", "The address asks for metre_id (did you mean meter_id?), which this page does not take: "
                        f"it takes {', '.join(DESK_TAKES[:-1])} and since."),
        ("priority=high&zone=north&kind=leak", "The address asks for zone and kind, which this page takes none of"),
        ("status=open&status=closed", "The address gives status more than once: give each once."),
    ],
)  # fmt: skip
def test_a_parameter_the_desk_does_not_take_is_said_on_the_page_and_nothing_listed(
    site: Site, query: str, said: str
) -> None:
    """Before, each was a 200 listing what the other filters keep (every enquiry, the high ones, the
    closed ones), under a form that said nothing of it. The form keeps what was understood."""
    client, _, reader = site
    _two_meters_enquiries(site)
    page = client.get(f"/care/enquiries?{query}", headers=reader)
    assert page.status_code == 400 and _rows(page.text) == []
    assert f'<p class="error">{said}' in unescape(page.text), page.text
    if "priority=high" in query:
        assert '<option value="high" selected>' in page.text


def test_the_desk_s_own_form_and_links_are_taken_blank_or_filled(site: Site) -> None:
    """What the desk's GET form sends (every field, blank ones too) and its next page's link are taken."""
    client, conn, reader = site
    _two_meters_enquiries(site)
    _insert(conn, [("open", "low", "staff", "billing", T0 + timedelta(minutes=n)) for n in range(60)])
    form = FORM.search(client.get("/care/enquiries", headers=reader).text)
    assert form is not None
    fields = re.findall(r'<(?:select|input) name="([^"]+)"', form.group(1))
    assert fields == ["status", "priority", "category", "source", "meter_id", "account"]
    blank = client.get("/care/enquiries", params=dict.fromkeys(fields, ""), headers=reader)
    assert blank.status_code == 200 and len(_rows(blank.text)) == 50
    filled = client.get("/care/enquiries", params={**dict.fromkeys(fields, ""), "priority": "low"}, headers=reader)
    following = re.search(r'<a href="([^"]+)">next page</a>', filled.text)
    assert filled.status_code == 200 and following is not None
    assert client.get(unescape(following.group(1)), headers=reader).status_code == 200


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12))
def test_any_name_the_desk_does_not_take_is_refused(site: Site, name: str) -> None:
    assume(name not in DESK_TAKES)
    client, _, reader = site
    page = client.get("/care/enquiries", params={name: "M1"}, headers=reader)
    assert page.status_code == 400 and "which this page does not take" in page.text, name
    assert _rows(page.text) == []


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("/care/meters/M1?days=90", "The address asks for days, which this page does not take: it takes before."),
        ("/care/meters/M1?before=2026-03-02T04:00Z&before=2026-03-01T04:00Z", "The address gives before more than"),
        ("/?page=2", "The address asks for page, which this page does not take: it takes after."),
        ("/care/enquiries/{enquiry}?status=closed", "The address asks for status, which this page does not take: "
                                                    "it takes none."),
    ],
)  # fmt: skip
def test_the_other_pages_say_a_parameter_they_do_not_take(site: Site, address: str, said: str) -> None:
    """The meter's page (before: its 30 days for ?days=90), the meters page and an enquiry's page, each
    answered 200 as if the address had not asked it."""
    client, conn, reader = site
    register_meters(conn, [("M1", "D1", "customer")])
    (enquiry,) = _insert(conn, [("open", "high", "staff", "billing", T0)])
    address = address.format(enquiry=enquiry)
    page = client.get(address, headers=reader)
    assert page.status_code == 400 and said in unescape(page.text), page.text
    assert client.get(address.partition("?")[0], headers=reader).status_code == 200


def test_the_sign_in_comes_first(site: Site) -> None:
    """Without a key, the sign-in form (401), whatever the address asks, as the API's 401 before its 400."""
    client: TestClient = site[0]
    client.cookies.clear()
    for address in ("/care/enquiries?metre=M1", "/?page=2", "/care/meters/M1?days=90", "/care/enquiries/1?x=1"):
        answer = client.get(address)
        assert answer.status_code == 401 and 'action="/login"' in answer.text, address
