"""The care desk filtered by account (/care/enquiries?account=, the API's GET /enquiries name): a
caller gives their account number, and the agent sees every enquiry of that account, the ones about no
meter (a bill) among them, in the desk's order, over every page. Before, the desk took no account
filter: ``?account=`` was a 400 page naming the parameters it takes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from server.web.care_desk import ENQUIRIES_PER_PAGE

T0 = datetime(2026, 3, 2, 4, tzinfo=UTC)
ROW_LINK = re.compile(r'<td><a href="/care/enquiries/(\d+)">#\d+</a>')
NEXT = re.compile(r'<a href="([^"]+)">next page</a>')


@pytest.fixture
def site(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, str]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "alice", ["customer_care"])
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'Sam'), ('A-2', 'Jo')")
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, key


def _raise(conn: psycopg.Connection, account: str, status: str, priority: str, minutes: int) -> int:
    row = conn.execute(
        "INSERT INTO enquiries (kind, category, source, status, priority, subject, account_id, opened_at, closed_at)"
        " VALUES ('complaint', 'billing', 'customer', %s, %s, 'bill too high', %s, %s, %s) RETURNING enquiry_id",
        (status, priority, account, T0 + timedelta(minutes=minutes), T0 if status == "closed" else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _ids(text: str) -> list[int]:
    return [int(found) for found in ROW_LINK.findall(text)]


def test_an_accounts_enquiries_are_listed_in_the_desks_order_and_no_other_accounts(site) -> None:
    client, conn, key = site
    closed = _raise(conn, "A-1", "closed", "urgent", 0)
    low = _raise(conn, "A-1", "open", "low", 1)
    urgent = _raise(conn, "A-1", "in_progress", "urgent", 2)
    _raise(conn, "A-2", "open", "urgent", 3)
    page = client.get("/care/enquiries", params={"account": "A-1"}, headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200
    assert _ids(page.text) == [urgent, low, closed]
    assert '<input name="account" value="A-1"' in page.text
    assert 'The enquiries of account A-1 (<a href="/care/meters?meter_id=A-1">its meters now</a>)' in page.text
    assert "<td>account A-1</td>" in page.text  # raised about no meter: the row says whose


def test_an_accounts_walk_keeps_the_filter_over_every_page(site) -> None:
    client, conn, key = site
    mine = [_raise(conn, "A-1", "open", "normal", n) for n in range(ENQUIRIES_PER_PAGE + 3)]
    for n in range(5):
        _raise(conn, "A-2", "open", "normal", n)
    headers = {"Authorization": f"Bearer {key}"}
    first = client.get("/care/enquiries", params={"account": "A-1"}, headers=headers).text
    link = NEXT.search(first)
    assert link is not None and "account=A-1" in unescape(link[1])
    second = client.get(unescape(link[1]), headers=headers).text
    assert _ids(first) + _ids(second) == sorted(mine, reverse=True)
    assert NEXT.search(second) is None


def test_an_account_with_no_enquiries_says_so(site) -> None:
    client, conn, key = site
    _raise(conn, "A-2", "open", "normal", 0)
    page = client.get("/care/enquiries", params={"account": "A-1"}, headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200 and _ids(page.text) == [] and "No enquiries of these filters." in page.text
