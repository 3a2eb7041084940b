"""The care desk's page (/care/enquiries: server.web.care_desk) reads as of one moment (server.snapshot):
its rows, the list above them of what changed since the walk began, and where the walk began. An
enquiry a colleague or detection changes while the page is read is on it once, as it was at that
moment. Before, each of the page's queries saw the database as it began: an enquiry raised to urgent
between the page's rows and that list was shown in both, one lowered from above the page into its rows
was in neither (and, on the walk's last page, on none of its pages), and one changed between where the
walk began and the first page's rows was shown there changed and listed on the next page as changed
since."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from html import unescape
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from server.care import desk
from server.web import care_desk as page_module
from tests.server.test_web_care_desk import (
    CHANGED_ROW,
    MOVED,
    NEXT,
    ROW_LINK,
    T0,
    _change,
    _insert,
    _once_older_transactions_end,
)

Site = tuple[TestClient, psycopg.Connection, dict[str, str]]


@pytest.fixture
def site(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """Two enquiries to a page: a client, the test's own connection (a colleague's or detection's, to
    change enquiries with while a page is read), and a customer care key's headers."""
    monkeypatch.setattr(page_module, "ENQUIRIES_PER_PAGE", 2)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        care = {"Authorization": f"Bearer {create_api_key(conn, 'alice', ['customer_care'])}"}
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, care


def _five(conn: psycopg.Connection) -> tuple[int, int, int, int, int]:
    """A high enquiry, two normal and two low (the newer first in each), opened between T0 and T0 + 2 h:
    the desk lists them so, two to a page. Their ids, in that order."""
    high, normal, normal2, low, low2 = _insert(
        conn,
        [
            ("open", "high", "customer", "billing", T0),
            ("open", "normal", "customer", "billing", T0 + timedelta(hours=2)),
            ("open", "normal", "customer", "billing", T0 + timedelta(hours=1)),
            ("open", "low", "customer", "billing", T0 + timedelta(hours=2)),
            ("open", "low", "customer", "billing", T0 + timedelta(hours=1)),
        ],
    )
    _once_older_transactions_end(conn)  # the walk's start after these inserts: only what the test moves, moved
    return high, normal, normal2, low, low2


def _then(read: Callable[..., Any], meanwhile: Callable[[], None]) -> Callable[..., Any]:
    """``read``, after which ``meanwhile`` (the test's connection, committing) runs: between two of the
    page's queries."""

    def read_then_changed(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        meanwhile()
        return found

    return read_then_changed


def _shown(page: str) -> tuple[list[int], list[int]]:
    """The page's rows, and the enquiries it lists as changed since the walk began, now above it."""
    return [int(n) for n in ROW_LINK.findall(page)], [int(n) for n in MOVED.findall(page)]


def _next(client: TestClient, page: str, headers: dict[str, str]) -> str:
    following = NEXT.search(page)
    assert following is not None, page
    answer = client.get(unescape(following.group(1)), headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_an_enquiry_raised_to_urgent_while_a_page_is_read_is_on_it_once(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the second page is read, after its rows and before the list above them, a normal enquiry
    among its rows is raised to urgent. Before, the page showed it twice: among its rows as normal and
    above them as changed since the walk began. Now it shows it as it was when the page was read, once;
    the next page lists it above its rows, urgent."""
    client, conn, care = site
    high, normal, normal2, low, low2 = _five(conn)
    first = client.get("/care/enquiries", headers=care).text
    assert _shown(first) == ([high, normal], [])
    with monkeypatch.context() as meanwhile:
        meanwhile.setattr(desk, "desk_page", _then(desk.desk_page, lambda: _change(conn, normal2, "open", "urgent")))
        second = _next(client, first, care)
    assert _shown(second) == ([normal2, low], [])
    assert CHANGED_ROW.findall(second) == []  # as it was when the walk began
    third = _next(client, second, care)
    assert _shown(third) == ([low2], [normal2])


def test_an_enquiry_lowered_into_a_page_while_it_is_read_is_on_it_once(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first page, a low enquiry is raised to urgent (above the pages to come); while the second
    page, the walk's last, is read, after its rows and before the list above them, it is lowered to
    normal, among that page's rows. Before, the page showed it in neither: its rows were read while it
    was urgent, the list while it was normal, below where the page begins; and the walk ended without
    it. Now the page lists it above its rows, as it was when the page was read."""
    client, conn, care = site
    high, normal, normal2, low, low2 = _five(conn)
    first = client.get("/care/enquiries", headers=care).text
    assert _shown(first) == ([high, normal], [])
    _change(conn, low2, "open", "urgent")
    with monkeypatch.context() as meanwhile:
        meanwhile.setattr(desk, "desk_page", _then(desk.desk_page, lambda: _change(conn, low2, "open", "normal")))
        second = _next(client, first, care)
    assert _shown(second) == ([normal2, low], [low2])
    assert f"#{low2}</a> urgent, open:" in second.split("now above this page")[1].split("</ul>")[0]
    assert NEXT.search(second) is None  # the walk's last page, as it was read


@pytest.mark.parametrize("before", ["walk_started", "categories"])
def test_a_walk_begins_at_its_first_page_s_moment(site: Site, monkeypatch: pytest.MonkeyPatch, before: str) -> None:
    """While the first page is read, after where the walk begins is asked (or after the categories, the
    page's first query, before it is asked) and before its rows, a low enquiry is raised to urgent.
    Before, the first page showed it urgent, first; the next listed it again above its rows as changed
    since the list's first page, which it was not, when the walk began before the change, and did not
    list it when after. Now the first page shows the list as of its moment, the walk begins at that
    moment (``pg_current_snapshot()`` in the page's transaction is the snapshot the page reads, not one
    taken when it is asked), and the next page lists the urgent one above its rows, once."""
    client, conn, care = site
    high, normal, normal2, low, low2 = _five(conn)
    read = getattr(desk, before)
    with monkeypatch.context() as meanwhile:
        meanwhile.setattr(desk, before, _then(read, lambda: _change(conn, low2, "open", "urgent")))
        first = client.get("/care/enquiries", headers=care).text
    assert _shown(first) == ([high, normal], [])
    second = _next(client, first, care)
    assert _shown(second) == ([normal2, low], [low2])
