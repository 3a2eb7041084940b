"""The care desk's list of every enquiry on the web page (/care/enquiries: server.web.care_desk,
server.care.desk, server migration 0048). Before, the page reached an enquiry only through the 25
alerts it shows: one a customer raised through Open311, or one of an alert not among them, could not
be opened from it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import make_conninfo

from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key
from server.care import desk as care_desk
from server.web import care_desk as page_module
from tests.query_plans import explained_nodes, queries_run

T0 = datetime(2026, 3, 2, 4, tzinfo=UTC)
OWN = {"Origin": "http://testserver"}
RANK = {"urgent": 4, "high": 3, "normal": 2, "low": 1}
ROW_LINK = re.compile(r'<td><a href="/care/enquiries/(\d+)">#\d+</a>(?: <span class="badge"[^>]*>changed</span>)?</td>')
CHANGED_ROW = re.compile(r'<td><a href="/care/enquiries/(\d+)">#\d+</a> <span class="badge"[^>]*>changed</span></td>')
MOVED = re.compile(r'<li><a href="/care/enquiries/(\d+)">#\d+</a>')
NEXT = re.compile(r'<a href="([^"]+)">next page</a>')


@pytest.fixture
def site(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {
            role: create_api_key(conn, name, [role])
            for role, name in (
                ("customer_care", "alice"),
                ("reader", "rita"),
                ("meterization", "mo"),
                ("billing", "bill"),
                ("admin", "ada"),
                ("customer_app", "fixit app"),
            )
        }
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, conn, keys


def _sign_in(client: TestClient, key: str) -> None:
    client.cookies.clear()
    signed_in = client.post("/login", data={"key": key}, headers=OWN, follow_redirects=False)
    assert signed_in.status_code == 303 and SESSION_COOKIE in signed_in.headers["set-cookie"]


def _insert(conn: psycopg.Connection, rows: list[tuple[str, str, str, str, datetime]]) -> list[int]:
    """Enquiries of (status, priority, source, category, opened_at); their ids, in that order."""
    ids = []
    for status, priority, source, category, opened in rows:
        row = conn.execute(
            """
            INSERT INTO enquiries (kind, category, source, status, priority, subject, opened_at, updated_at,
                                   closed_at)
            VALUES ('enquiry', %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s = 'closed' THEN %s::timestamptz END)
            RETURNING enquiry_id
            """,
            (category, source, status, priority, f"{priority} {status}", opened, opened, status, opened),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


def _the_page_s_query(text: str) -> bool:
    """The desk's query of a page's rows (not of what moved above it since the walk began)."""
    return "FROM enquiries" in text and "ORDER BY" in text and ">= (%(rank)s" not in text


def _first_two_pages_queries(client: TestClient, key: str, query: str) -> list[tuple[str, Any]]:
    """The desk's queries (text, parameters) of the first page of ``query`` and of the next, signed in
    with ``key``."""
    _sign_in(client, key)
    with queries_run(_the_page_s_query) as recorded:
        first = client.get(f"/care/enquiries{query}").text
        following = NEXT.search(first)
        assert following is not None
        client.get(unescape(following.group(1)))
    assert len(recorded) == 2, recorded
    return list(recorded)


def _listed(client: TestClient, address: str) -> list[int]:
    """Every enquiry the desk lists from ``address`` on, following its next-page links."""
    shown: list[int] = []
    while True:
        answer = client.get(address)
        assert answer.status_code == 200, answer.text
        shown += [int(n) for n in ROW_LINK.findall(answer.text)]
        following = NEXT.search(answer.text)
        if following is None:
            return shown
        address = unescape(following.group(1))


def test_an_enquiry_the_main_page_does_not_show_is_on_the_desk_and_opens_from_it(site) -> None:
    """A customer's Open311 request, and the enquiry of the 26th most urgent alert, are not on the
    main page; the desk lists them (the customer's street leak, high, first; the oldest low battery
    last), each linking to its page."""
    client, conn, keys = site
    conn.execute(
        """
        INSERT INTO alerts (alert_id, kind, source, status, meter_id, dma, start, detected_at, last_seen,
                            rate_l_h, volume_l, confidence, evidence)
        SELECT 'low_battery/M' || i, 'low_battery', 'meter', 'open', 'M' || i, 'D1', t, t, t, 0, 0, 0.9, '[]'
        FROM generate_series(1, 26) i, LATERAL (SELECT %s::timestamptz + make_interval(mins => i) AS t) at
        """,
        (T0,),
    )
    raised = client.post(
        "/open311/v2/requests.json",
        data={"api_key": keys["customer_app"], "service_code": "leak_street", "address_string": "1 High St",
              "description": "Water coming up through the road"},
    )  # fmt: skip
    assert raised.status_code == 200, raised.text
    customer = int(raised.json()[0]["service_request_id"])
    (oldest_alert,) = conn.execute("SELECT enquiry_id FROM enquiries WHERE alert_id = 'low_battery/M1'").fetchone()
    _sign_in(client, keys["reader"])
    front = client.get("/").text
    assert '<a href="/care/enquiries">' in front
    for hidden in (customer, oldest_alert):
        assert f'href="/care/enquiries/{hidden}"' not in front
    listed = client.get("/care/enquiries")
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    rows = [int(n) for n in ROW_LINK.findall(listed.text)]
    assert rows[0] == customer  # high (a street leak), before 26 low batteries
    assert rows[-1] == oldest_alert and len(rows) == 27
    assert 'http-equiv="refresh"' not in listed.text
    assert client.get(f"/care/enquiries/{customer}").status_code == 200


def test_the_desk_filters_by_links_and_a_get_form(site) -> None:
    client, conn, keys = site
    street, billing, closed, staff = _insert(
        conn,
        [
            ("open", "high", "customer", "street leak", T0),
            ("in_progress", "normal", "customer", "billing", T0 + timedelta(hours=1)),
            ("closed", "urgent", "detection", "customer burst", T0 + timedelta(hours=2)),
            ("escalated", "low", "staff", "complaint", T0 + timedelta(hours=3)),
        ],
    )
    _sign_in(client, keys["customer_care"])
    everything = client.get("/care/enquiries").text
    for name in ("status", "priority", "category", "source"):
        assert f'<select name="{name}">' in everything
    assert '<form class="filters" method="get" action="/care/enquiries">' in everything
    assert _listed(client, "/care/enquiries") == [street, billing, staff, closed]
    assert _listed(client, "/care/enquiries?source=customer") == [street, billing]
    assert _listed(client, "/care/enquiries?status=closed") == [closed]
    assert _listed(client, "/care/enquiries?priority=urgent") == [closed]
    assert _listed(client, "/care/enquiries?category=complaint&status=escalated") == [staff]
    assert _listed(client, "/care/enquiries?category=street+leak&priority=high&source=customer") == [street]
    assert _listed(client, "/care/enquiries?source=staff&status=open") == []
    chosen = client.get("/care/enquiries?priority=normal").text
    assert '<option value="normal" selected>' in chosen


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("status=shut", "There is no status &#39;shut&#39;"),
        ("priority=critical", "There is no priority &#39;critical&#39;"),
        ("source=app", "There is no source &#39;app&#39;"),
        ("category=" + "x" * 65, "A category is at most 64 characters."),
        ("after=42", "That page&#39;s link is not one this list made"),
        ("after=urgent.999999999999999999.1", "That page&#39;s link is not one this list made"),
    ],
)
def test_a_parameter_the_desk_does_not_know_is_said_on_the_page(site, query: str, said: str) -> None:
    client, _, keys = site
    _sign_in(client, keys["customer_care"])
    answer = client.get(f"/care/enquiries?{query}")
    assert answer.status_code == 400 and said in answer.text


def test_a_meter_id_of_any_length_is_asked_and_shown(site) -> None:
    """``meters`` holds ids longer than the contract's 64 characters (registered before they were
    checked): the desk's filter takes them, as the API's does. Before, it answered 400 over 64."""
    client, conn, keys = site
    longest = "M/?&" + "9" * 296  # a path's and a query's characters too
    (named,) = _insert(conn, [("open", "low", "staff", "billing", T0)])
    _insert(conn, [("open", "low", "staff", "billing", T0)])
    conn.execute("UPDATE enquiries SET meter_id = %s WHERE enquiry_id = %s", (longest, named))
    _sign_in(client, keys["customer_care"])
    page = client.get("/care/enquiries", params={"meter": longest})
    assert page.status_code == 200 and [int(n) for n in ROW_LINK.findall(page.text)] == [named]
    assert f'<input name="meter_id" value="M/?&amp;{"9" * 296}"' in page.text
    assert '<a href="/care/meters/M%2F%3F%26' in page.text  # the meter's page, linked
    assert _listed(client, "/care/enquiries?meter=NONE+SUCH") == []


def test_the_desk_is_for_the_keys_that_read_enquiries(site) -> None:
    client, _, keys = site
    client.cookies.clear()
    assert client.get("/care/enquiries").status_code == 401
    for role in ("reader", "meterization", "customer_care", "admin"):
        _sign_in(client, keys[role])
        assert client.get("/care/enquiries").status_code == 200, role
    _sign_in(client, keys["billing"])
    refused = client.get("/care/enquiries")
    assert refused.status_code == 403 and "may not see enquiries" in refused.text


ENQUIRY = st.tuples(
    st.sampled_from(care_desk.STATUSES),
    st.sampled_from(care_desk.PRIORITIES),
    st.sampled_from(care_desk.SOURCES),
    st.sampled_from(["customer leak", "billing"]),
    st.integers(0, 3).map(lambda h: T0 + timedelta(hours=h)),  # ties on opened_at
)
FILTER = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(care_desk.STATUSES),
        "priority": st.sampled_from(care_desk.PRIORITIES),
        "source": st.sampled_from(care_desk.SOURCES),
        "category": st.sampled_from(["customer leak", "billing", "none such"]),
    },
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ENQUIRY, max_size=14), asked=FILTER, per_page=st.integers(1, 4))
def test_paging_through_the_desk_lists_each_enquiry_it_keeps_once_in_its_order(
    site, monkeypatch, rows, asked: dict[str, str], per_page: int
) -> None:
    """Whatever the enquiries and filters, following the next-page links lists the enquiries the
    filters keep, each once: those being worked by priority (urgent to low), then the closed ones,
    each group the newest opened first (then the highest id)."""
    client, conn, keys = site
    monkeypatch.setattr(page_module, "ENQUIRIES_PER_PAGE", per_page)
    conn.execute("DELETE FROM enquiries")
    ids = _insert(conn, rows)
    kept = []
    for enquiry_id, (status, priority, source, category, opened) in zip(ids, rows, strict=True):
        fields = {"status": status, "priority": priority, "source": source, "category": category}
        if all(fields[name] == value for name, value in asked.items()):
            kept.append((0 if status == "closed" else RANK[priority], opened, enquiry_id))
    expected = [enquiry_id for *_, enquiry_id in sorted(kept, reverse=True)]
    _sign_in(client, keys["reader"])
    query = "&".join(f"{name}={value.replace(' ', '+')}" for name, value in asked.items())
    assert _listed(client, "/care/enquiries" + (f"?{query}" if query else "")) == expected


@pytest.mark.parametrize("query", ["", "?priority=high", "?status=closed", "?source=customer&category=billing"])
def test_a_desk_page_reads_only_the_enquiries_it_shows(site, query: str) -> None:
    """No timing here: the plan of the desk's query, recorded from GET /care/enquiries, with 20,000
    enquiries of every status and priority, reads its page off enquiries_care_desk_idx (server
    migration 0048; filtered by source, 0053's by source; by priority, 0055's by priority; by status,
    0058's by status) and sorts nothing, on the first page and the next. (On 2,000, now that the planner
    counts the closed ones after a page among them, a bitmap scan of the 450 and a sort cost it less
    than reading 51 in order.)"""
    client, conn, keys = site
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, opened_at, updated_at, closed_at)
        SELECT 'enquiry', 'billing', 'customer', s, (ARRAY['low', 'normal', 'high', 'urgent'])[1 + (i / 4) %% 4],
               'subject', t, t, CASE WHEN s = 'closed' THEN t END
        FROM generate_series(1, 20000) i,
             LATERAL (SELECT (ARRAY['open', 'in_progress', 'escalated', 'closed'])[1 + i %% 4] AS s,
                             %s::timestamptz + make_interval(mins => i) AS t) x
        """,
        (T0,),
    )
    conn.execute("ANALYZE enquiries")
    recorded = _first_two_pages_queries(client, keys["customer_care"], query)
    for text, params in recorded:
        nodes = explained_nodes(conn, text, params)
        read = [node for node in nodes if node.get("Relation Name") == "enquiries"]
        indexes = {"enquiries_care_desk_idx"}
        if "source=" in query:
            indexes = {"enquiries_care_desk_by_source_idx"}  # 0053
        elif "priority=" in query:
            indexes = {"enquiries_care_desk_by_priority_idx"}  # 0055
        elif "status=" in query:  # the closed ones: 0048's rank 0 or 0058's closed status, the same rows
            indexes.add("enquiries_care_desk_by_status_idx")
        assert len(read) == 1 and read[0].get("Index Name") in indexes, nodes
        assert all(node["Actual Rows"] <= page_module.ENQUIRIES_PER_PAGE + 1 for node in read), nodes
        assert not [node for node in nodes if node["Node Type"] == "Sort"], nodes
        assert all(node["Plan Rows"] >= node["Actual Rows"] for node in read), nodes  # see the next test


@pytest.mark.parametrize(
    "query", ["?source=customer", "?source=customer&status=escalated", "?source=customer&priority=high"]
)
def test_a_page_filtered_by_source_reads_only_that_source_s_enquiries(site, query: str) -> None:
    """No timing here: customers raise 1 enquiry in 20 of 8,000 (the rest are detection's and staff's,
    every status and priority). A page filtered by source seeks to that source in an index kept in the desk's order
    within each source (server migration 0053): the plan, recorded from GET /care/enquiries, reads no
    enquiry of another source, on the first page and the next. Before, it read
    enquiries_care_desk_idx and dropped the other sources on the way: 1,020 rows for the first page of 51."""
    client, conn, keys = site
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, opened_at, updated_at, closed_at)
        SELECT 'enquiry', 'billing', CASE WHEN i %% 20 = 0 THEN 'customer' WHEN i %% 2 = 0 THEN 'staff'
                                         ELSE 'detection' END,
               s, (ARRAY['low', 'normal', 'high', 'urgent'])[1 + (i / 40) %% 4],
               'subject', t, t, CASE WHEN s = 'closed' THEN t END
        FROM generate_series(1, 8000) i,
             LATERAL (SELECT (ARRAY['open', 'in_progress', 'escalated', 'closed'])[1 + (i / 20) %% 4] AS s,
                             %s::timestamptz + make_interval(mins => i) AS t) x
        """,
        (T0,),
    )
    conn.execute("ANALYZE enquiries")
    recorded = _first_two_pages_queries(client, keys["customer_care"], query)
    customers = conn.execute("SELECT count(*) FROM enquiries WHERE source = 'customer'").fetchone()
    assert customers is not None and customers[0] == 400
    for text, params in recorded:
        nodes = explained_nodes(conn, text, params)
        read = [node for node in nodes if node.get("Relation Name") == "enquiries"]
        assert read, nodes
        # the rows it fetched, kept or dropped: at most the customers' (a small table's plan may take them
        # all through a bitmap and sort them), never the others' 7,600
        touched = sum(node["Actual Rows"] + node.get("Rows Removed by Filter", 0) for node in read)
        assert touched <= customers[0], nodes


@pytest.mark.parametrize("query", ["?priority=urgent", "?priority=urgent&status=closed"])
def test_a_page_filtered_by_priority_reads_only_that_priority_s_enquiries(site, query: str) -> None:
    """No timing here: of 8,000 enquiries (every status and priority) 400 are urgent, 36 of them being
    worked, so the urgent list's first page runs on into the closed ones. A page filtered by priority
    seeks to that priority in an index kept in the desk's order within each priority (server
    migration 0055): the plan, recorded from GET /care/enquiries, fetches only the rows the page shows
    (and the one that says a next page follows), on the first page and the next. Before, it read
    enquiries_care_desk_idx over every rank from urgent down to closed and dropped the other
    priorities on the way: 1,019 rows fetched for the first page of 51, 1,037 for the second (the
    closed urgent ones: 1,001 and 1,018)."""
    client, conn, keys = site
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, opened_at, updated_at, closed_at)
        SELECT 'enquiry', 'billing', 'detection', s, p, 'subject', t, t, CASE WHEN s = 'closed' THEN t END
        FROM generate_series(1, 8000) i,
             LATERAL (SELECT CASE WHEN i %% 11 = 0 THEN (ARRAY['open', 'in_progress', 'escalated'])[1 + i %% 3]
                                  ELSE 'closed' END AS s,
                             CASE WHEN i %% 20 = 0 THEN 'urgent' ELSE (ARRAY['low', 'normal', 'high'])[1 + i %% 3] END
                                 AS p,
                             %s::timestamptz + make_interval(mins => i) AS t) x
        """,
        (T0,),
    )
    conn.execute("ANALYZE enquiries")
    counts = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status <> 'closed') FROM enquiries WHERE priority = 'urgent'"
    ).fetchone()
    assert counts == (400, 36)
    recorded = _first_two_pages_queries(client, keys["customer_care"], query)
    for text, params in recorded:
        nodes = explained_nodes(conn, text, params)
        read = [node for node in nodes if node.get("Relation Name") == "enquiries"]
        assert [node.get("Index Name") for node in read] == ["enquiries_care_desk_by_priority_idx"], nodes
        touched = sum(node["Actual Rows"] + node.get("Rows Removed by Filter", 0) for node in read)
        assert touched <= page_module.ENQUIRIES_PER_PAGE + 1, nodes
        assert not [node for node in nodes if node["Node Type"] == "Sort"], nodes
        # Nor does the planner think fewer rows follow the page's start than the page reads. Before, a page
        # among the closed ones was judged by its keyset's first column alone, rank < 0: one row, so any
        # index holding the desk's order looked as cheap, and on 150,000 enquiries some pages of a walk
        # read enquiries_care_desk_idx (up to 711 rows fetched for 51).
        assert all(node["Plan Rows"] >= node["Actual Rows"] for node in read), nodes


@pytest.mark.parametrize(
    "query", ["?status=open&priority=urgent", "?status=in_progress&priority=normal", "?status=escalated"]
)
def test_a_page_filtered_by_a_status_being_worked_reads_only_that_status_s_enquiries(site, query: str) -> None:
    """No timing here: of 20,000 enquiries 6,000 are being worked, a third of them in each of open,
    in progress and escalated, and every priority (urgent a tenth). A page filtered by a status being
    worked, with or without a priority, seeks to that status and the rank in an index kept in the
    desk's order within each status (server migration 0058), asking for the rank, not the priority
    it says: the plan, recorded from GET /care/enquiries, fetches only the rows the page shows (and
    the one that says a next page follows), on the first page and the next. Before, a page of open
    urgent ones fetched all 200 of them through a bitmap and sorted them (the planner, taking
    ``priority = 'urgent'`` for a further filter on the urgent rank, counted 6), one of in-progress
    normal ones 804 the same way, and one of escalated ones read 0048's index over every status being
    worked and dropped the others: 147 rows fetched for 51."""
    client, conn, keys = site
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, opened_at, updated_at, closed_at)
        SELECT 'enquiry', 'billing', 'detection', s, p, 'subject', t, t, CASE WHEN s = 'closed' THEN t END
        FROM generate_series(1, 20000) i,
             LATERAL (SELECT CASE WHEN i %% 10 < 3 THEN (ARRAY['open', 'in_progress', 'escalated'])[1 + (i / 10) %% 3]
                                  ELSE 'closed' END AS s,
                             (ARRAY['urgent', 'high', 'high', 'normal', 'normal', 'normal', 'normal', 'low', 'low',
                                    'low'])[1 + (i / 30) %% 10] AS p,
                             %s::timestamptz + make_interval(mins => i) AS t) x
        """,
        (T0,),
    )
    conn.execute("ANALYZE enquiries")
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE status <> 'closed'),"
        " count(*) FILTER (WHERE status = 'open' AND priority = 'urgent') FROM enquiries"
    ).fetchone()
    assert counts == (6000, 200)
    recorded = _first_two_pages_queries(client, keys["customer_care"], query)
    for text, params in recorded:
        nodes = explained_nodes(conn, text, params)
        read = [node for node in nodes if node.get("Relation Name") == "enquiries"]
        touched = sum(node["Actual Rows"] + node.get("Rows Removed by Filter", 0) for node in read)
        assert touched <= page_module.ENQUIRIES_PER_PAGE + 1, nodes
        assert [node.get("Index Name") for node in read] == ["enquiries_care_desk_by_status_idx"], nodes
        assert not [node for node in nodes if node["Node Type"] == "Sort"], nodes


def _change(conn: psycopg.Connection, enquiry_id: int, status: str, priority: str) -> None:
    """What a person's update or detection's trigger does to an enquiry's place: a status and a
    priority, with updated_at its transaction's start."""
    conn.execute(
        """
        UPDATE enquiries SET status = %s, priority = %s, updated_at = now(),
                             closed_at = CASE WHEN %s = 'closed' THEN now() END
        WHERE enquiry_id = %s
        """,
        (status, priority, status, enquiry_id),
    )


def _once_older_transactions_end(conn: psycopg.Connection) -> None:
    """Wait until every transaction running now, in any database of the server, has ended. A walk
    begins at the oldest transaction still running (server.care.desk.walk_started: transaction ids are
    the whole server's), so another session's transaction (another pytest worker's) open across this
    test's inserts made the walk count them as written since it began: rows listed as moved above
    the next page that had not moved (a conservative start, never a lost row; the test's exact
    lists are about what did move)."""
    row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    deadline = time.monotonic() + 60
    while True:
        oldest = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
        assert oldest is not None
        if oldest[0] > row[0]:
            return
        assert time.monotonic() < deadline, "a transaction of another session stayed open for 60 s"
        time.sleep(0.05)


def test_an_enquiry_that_moves_above_the_pages_to_come_is_listed_on_the_next_one(site, monkeypatch) -> None:
    """Two to a page. After the first page, a low enquiry the third page would have shown is raised to
    urgent (a leak that became a burst: server migration 0045) and one the first page showed is closed.
    Before, the walk never showed the urgent one (it had moved above the pages still to come) and showed
    the closed one again among the closed, unmarked. Now the next page lists the urgent one above its
    rows, and the closed one, shown again, is marked changed."""
    client, conn, keys = site
    monkeypatch.setattr(page_module, "ENQUIRIES_PER_PAGE", 2)
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
    _sign_in(client, keys["customer_care"])
    _once_older_transactions_end(conn)
    first = client.get("/care/enquiries").text
    assert [int(n) for n in ROW_LINK.findall(first)] == [high, normal]
    assert "Changed since" not in first
    _change(conn, low2, "open", "urgent")
    _change(conn, high, "closed", "high")
    following = NEXT.search(first)
    assert following is not None and "since=" in following.group(1)
    second = client.get(unescape(following.group(1))).text
    assert [int(n) for n in ROW_LINK.findall(second)] == [normal2, low]
    assert [int(n) for n in MOVED.findall(second)] == [low2]
    assert "Changed since this list's first page, now above this page" in second
    following = NEXT.search(second)
    assert following is not None
    third = client.get(unescape(following.group(1))).text
    assert [int(n) for n in ROW_LINK.findall(third)] == [high]
    assert [int(n) for n in CHANGED_ROW.findall(third)] == [high]  # shown on the first page too
    assert [int(n) for n in MOVED.findall(third)] == [low2]


@pytest.fixture
def desk_on_its_own_role(migrated_database_url: str) -> Iterator[tuple[TestClient, psycopg.Connection, str, str]]:
    """The server on a database role of its own, as a deployment gives it: no superuser, not a member
    of pg_read_all_stats, with its tables' privileges. Beside it, the test's connection as another
    role (the collector's, whose detection raises and changes enquiries). A customer_care key."""
    role = f"aquami_server_{uuid.uuid4().hex[:12]}"
    url = make_conninfo(migrated_database_url, user=role)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        try:
            for kind in ("TABLES", "SEQUENCES"):
                conn.execute(sql.SQL(f"GRANT ALL ON ALL {kind} IN SCHEMA public TO {{}}").format(sql.Identifier(role)))
            key = create_api_key(conn, "alice", ["customer_care"])
            with TestClient(create_app(url)) as client:
                yield client, conn, key, url
        finally:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_walk_lists_what_a_transaction_open_at_its_start_changed_after_it(desk_on_its_own_role, monkeypatch) -> None:
    """Two to a page. Another role's transaction, open before the first page, raises the low enquiry
    the second page would have shown to urgent after it, and commits: the first page did not see the
    change, and the enquiry is now above the second page. Its updated_at is the transaction's start,
    before the walk began. The server's role sees no other role's transaction in pg_stat_activity, so
    before, the walk began at the first page's now() and the change was older: the enquiry was on no
    page. Now the walk begins at the oldest transaction the database still runs (pg_current_snapshot,
    which any role may ask), and the second page lists it."""
    client, conn, key, url = desk_on_its_own_role
    monkeypatch.setattr(page_module, "ENQUIRIES_PER_PAGE", 2)
    high, normal, normal2, low = _insert(
        conn,
        [
            ("open", "high", "detection", "customer leak", T0),
            ("open", "normal", "detection", "meter fault", T0 + timedelta(hours=2)),
            ("open", "normal", "detection", "meter fault", T0 + timedelta(hours=1)),
            ("open", "low", "detection", "meter fault", T0),
        ],
    )
    _sign_in(client, key)
    _once_older_transactions_end(conn)
    with psycopg.connect(conn.info.dsn) as writer:  # one transaction, as detection's run
        writer.execute("SELECT 1")
        with psycopg.connect(url) as as_the_server:
            seen = as_the_server.execute(
                "SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (writer.info.backend_pid,)
            ).fetchone()
        assert seen == (None,)  # the server's role cannot see when it began
        first = client.get("/care/enquiries").text
        assert [int(n) for n in ROW_LINK.findall(first)] == [high, normal]
        _change(writer, low, "open", "urgent")
    following = NEXT.search(first)
    assert following is not None
    second = client.get(unescape(following.group(1))).text
    assert [int(n) for n in ROW_LINK.findall(second)] == [normal2]
    assert [int(n) for n in MOVED.findall(second)] == [low]


@pytest.mark.parametrize(
    "query",
    [
        "after=high.1772424306123457.42",
        "since=x1234",
        "since=x&after=low.1.1",
        "after=low.1.1&since=1772424306123457",  # an instant, as links made before server migration 0056
        f"after=low.1.1&since=x{2**64}",
    ],
)
def test_a_later_page_s_link_carries_both_where_it_ended_and_when_the_walk_began(site, query: str) -> None:
    client, _, keys = site
    _sign_in(client, keys["customer_care"])
    answer = client.get(f"/care/enquiries?{query}")
    assert answer.status_code == 400 and "That page&#39;s link is not one this list made" in answer.text


METERED = st.tuples(ENQUIRY, st.sampled_from(["M1", "M2", None]))
METER_FILTER = st.tuples(FILTER, st.sampled_from(["M1", "M2", "M3"]))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(METERED, max_size=14), asked=METER_FILTER, per_page=st.integers(1, 4))
def test_the_desk_filtered_by_meter_lists_that_meter_s_enquiries_in_the_desk_s_order(
    site, monkeypatch, rows, asked: tuple[dict[str, str], str], per_page: int
) -> None:
    """Whatever the enquiries, the meters they name and the other filters beside ``meter``, following
    the next-page links lists exactly the enquiries the unfiltered desk lists that name the meter and
    that the other filters keep, in the unfiltered desk's order. Before, the desk took no meter filter
    (``meter=`` was ignored: every enquiry was listed)."""
    client, conn, keys = site
    monkeypatch.setattr(page_module, "ENQUIRIES_PER_PAGE", per_page)
    others, meter = asked
    conn.execute("DELETE FROM enquiries")
    ids = _insert(conn, [enquiry for enquiry, _ in rows])
    fields = {}
    for enquiry_id, ((status, priority, source, category, _), meter_id) in zip(ids, rows, strict=True):
        conn.execute("UPDATE enquiries SET meter_id = %s WHERE enquiry_id = %s", (meter_id, enquiry_id))
        fields[enquiry_id] = {"status": status, "priority": priority, "source": source, "category": category,
                              "meter": meter_id}  # fmt: skip
    _sign_in(client, keys["reader"])
    everything = _listed(client, "/care/enquiries")
    wanted = {**others, "meter": meter}
    expected = [n for n in everything if all(fields[n][name] == value for name, value in wanted.items())]
    query = "&".join(f"{name}={value.replace(' ', '+')}" for name, value in wanted.items())
    assert _listed(client, f"/care/enquiries?{query}") == expected


@pytest.mark.parametrize(
    "query",
    ["?meter=BIG", "?meter=BIG&priority=high", "?meter=BIG&status=closed", "?meter=BIG&status=open&priority=low"],
)
def test_a_page_filtered_by_meter_reads_only_the_rows_it_shows(site, query: str) -> None:
    """No timing here: of 20,000 enquiries (every status and priority, 1,000 meters) 2,000 name meter
    BIG, of every status and priority. A page filtered by meter, alone or with a priority or among the
    closed ones, seeks to that meter (and rank) in an index kept in the desk's order within each meter
    (server migration 0059): the plan, recorded from GET /care/enquiries, fetches only the rows the page
    shows (and the one that says a next page follows) and sorts nothing, on the first page and the next.
    With a status being worked, which shares its ranks with the other two, it reads the meter's
    enquiries of those ranks off the same index (here a bitmap of 375, sorted), none of another meter's.
    Without it, the planner read 0042's enquiries_meter_idx and sorted all of the meter's rows (2,000
    fetched for a page of 51)."""
    client, conn, keys = site
    conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, status, priority, subject, meter_id, opened_at, updated_at,
                               closed_at)
        SELECT 'enquiry', 'billing', 'detection', s, (ARRAY['low', 'normal', 'high', 'urgent'])[1 + (i / 40) %% 4],
               'subject', CASE WHEN i %% 10 = 0 THEN 'BIG' ELSE 'M' || i %% 1000 END, t, t,
               CASE WHEN s = 'closed' THEN t END
        FROM generate_series(1, 20000) i,
             LATERAL (SELECT (ARRAY['open', 'in_progress', 'escalated', 'closed'])[1 + (i / 10) %% 4] AS s,
                             %s::timestamptz + make_interval(mins => i) AS t) x
        """,
        (T0,),
    )
    conn.execute("ANALYZE enquiries")
    big = conn.execute("SELECT count(*) FROM enquiries WHERE meter_id = 'BIG'").fetchone()
    assert big == (2000,)
    worked_alike = conn.execute(  # the meter's enquiries of the rank a status being worked shares
        "SELECT count(*) FROM enquiries WHERE meter_id = 'BIG' AND status <> 'closed' AND priority = 'low'"
    ).fetchone()
    assert worked_alike == (375,)
    recorded = _first_two_pages_queries(client, keys["customer_care"], query)
    for text, params in recorded:
        nodes = explained_nodes(conn, text, params)
        read = [node for node in nodes if node.get("Relation Name") == "enquiries"]
        indexes = {node["Index Name"] for node in nodes if "Index Name" in node}
        assert len(read) == 1 and indexes == {"enquiries_care_desk_by_meter_idx"}, nodes
        touched = sum(node["Actual Rows"] + node.get("Rows Removed by Filter", 0) for node in read)
        if "status=open" in query:
            assert touched <= worked_alike[0], nodes
        else:
            assert touched <= page_module.ENQUIRIES_PER_PAGE + 1, nodes
            assert not [node for node in nodes if node["Node Type"] == "Sort"], nodes


CHANGE = st.tuples(st.integers(0, 13), st.sampled_from(care_desk.STATUSES), st.sampled_from(care_desk.PRIORITIES))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ENQUIRY, min_size=1, max_size=12),
    asked=FILTER,
    per_page=st.integers(1, 3),
    changes=st.lists(st.lists(CHANGE, max_size=3), max_size=6),
    raised=st.lists(ENQUIRY, max_size=3),
)
def test_a_walk_shows_or_lists_every_enquiry_whatever_moves_meanwhile(
    site, monkeypatch, rows, asked: dict[str, str], per_page: int, changes, raised
) -> None:
    """Whatever changes between one page and the next (statuses, priorities, enquiries raised), every
    enquiry the filters keep once the walk ends was on one of its pages after its last change or was
    listed as moved above a later page, and one shown a second time is marked changed."""
    client, conn, keys = site
    monkeypatch.setattr(page_module, "ENQUIRIES_PER_PAGE", per_page)
    conn.execute("DELETE FROM enquiries")
    ids = _insert(conn, rows)
    _sign_in(client, keys["reader"])
    query = "&".join(f"{name}={value.replace(' ', '+')}" for name, value in asked.items())
    address = "/care/enquiries" + (f"?{query}" if query else "")
    seen_after: dict[int, int] = {}  # enquiry: the page it was last shown or listed on
    changed_at: dict[int, int] = {}  # enquiry: the page before which it last changed
    shown_on: dict[int, list[int]] = {}
    page = 0
    while True:
        answer = client.get(address)
        assert answer.status_code == 200, answer.text
        for n in [int(n) for n in ROW_LINK.findall(answer.text)] + [int(n) for n in MOVED.findall(answer.text)]:
            seen_after[n] = page
        marked = {int(n) for n in CHANGED_ROW.findall(answer.text)}
        for n in [int(n) for n in ROW_LINK.findall(answer.text)]:
            if shown_on.get(n):
                assert n in marked, (n, shown_on)
            shown_on.setdefault(n, []).append(page)
        following = NEXT.search(answer.text)
        if following is None:
            break
        page += 1
        for index, status, priority in changes[page - 1] if page - 1 < len(changes) else []:
            _change(conn, ids[index % len(ids)], status, priority)
            changed_at[ids[index % len(ids)]] = page
        if page == 1 and raised:
            for n in _insert(conn, raised):  # raised now, as every writer does (updated_at: its start)
                conn.execute("UPDATE enquiries SET updated_at = now() WHERE enquiry_id = %s", (n,))
                changed_at[n] = page
        address = unescape(following.group(1))
    where = " AND ".join(f"{name} = %({name})s" for name in asked) or "true"
    kept = [n for (n,) in conn.execute(f"SELECT enquiry_id FROM enquiries WHERE {where}", asked).fetchall()]
    for n in kept:
        assert n in seen_after and seen_after[n] >= changed_at.get(n, 0), (n, seen_after, changed_at)


def test_a_position_is_written_and_read_back_exactly() -> None:
    at = datetime(2026, 3, 2, 4, 5, 6, 123457, tzinfo=UTC)
    position = care_desk.Position(3, at, 42)
    assert position.token() == "high.1772424306123457.42"
    assert care_desk.Position.parse(position.token()) == position
