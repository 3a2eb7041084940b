"""The care desk: every enquiry on one list (/care/enquiries), the ones being worked first (urgent to
low, the newest first within each), then the closed ones, newest first (server.care.desk), 50 to a
page, each linking to its enquiry's page. Filters are plain query parameters (status, priority,
category, source, meter_id, account), set by a GET form or a link (a meter's page links its enquiries here); the
next page's link carries them and where this one ended (``after``). Before, the web page reached an
enquiry only through the 25 alerts it shows, and the desk could not be filtered by meter.

The meter's filter is ``meter_id``, as the API's ``GET /enquiries`` names it, so a link works on both
once its path is changed; ``meter``, its name before, is still taken (bookmarks, links made then).
``account`` (the API's name too) lists an account's enquiries, the ones raised about no meter (a bill)
among them, for a caller who gives their account number: before, the desk could not be filtered by it.
A parameter the desk does not take, or one given twice, is said on the page (400), the list left
empty (server.web.pages.address_not_taken): before, it was ignored, and ``?meter_id=M1`` listed
every enquiry under a page that looked filtered.

A walk through the list carries where its first page read it (``since``: the oldest transaction that
page could not see, server.care.desk.walk_started): each later page lists,
above its rows, the enquiries changed or raised since then that are now above it (an enquiry
re-prioritised, reopened or raised while the person paged on, which the pages to come would not
show), and marks its own rows changed since (one closed meanwhile may have been on an earlier page).
A page's queries (its rows, that list, the categories, where the walk began) are read as of one moment
(server.snapshot): before, each saw the database as its own query began, and an enquiry raised to
urgent between the page's rows and that list was shown in both, one lowered from above the page into
it in neither, and an enquiry changed between where the walk began and the first page's rows was shown
on it as changed and listed again on the next as changed since.

Seen by the keys that read enquiries (the API's GET /enquiries roles, and admin). The list does not
refresh itself: a page that moved under the reader's eyes would shift the row being clicked.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from server.care import desk
from server.care.router import READS_ENQUIRIES
from server.care.schemas import CATEGORY_MAX_LENGTH, Enquiry
from server.db import get_connection
from server.snapshot import one_moment
from server.web.pages import address_not_taken, signed_in, templates

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)  # pages
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
PATH = "/care/enquiries"
ENQUIRIES_PER_PAGE = 50
#: A later page lists at most this many enquiries changed since the walk began and now above it.
MOVED_SHOWN = 20
_CHOICES = {"status": desk.STATUSES, "priority": desk.PRIORITIES, "source": desk.SOURCES}


@router.get(PATH, response_class=HTMLResponse)
def care_desk(
    request: Request,
    conn: Connection,
    status: str = "",
    priority: str = "",
    category: str = "",
    source: str = "",
    meter_id: str = "",
    meter: str = "",  # meter_id's name before: still taken
    account: str = "",
    after: str = "",
    since: str = "",
) -> Response:
    principal = signed_in(request, conn, READS_ENQUIRIES, "see enquiries")
    if isinstance(principal, Response):
        return principal
    with one_moment(conn):  # the rows, what moved above them, the walk's start: one moment (server.snapshot)
        asked = {"status": status, "priority": priority, "category": category, "source": source}
        asked["meter_id"] = meter_id or meter
        asked["account"] = account
        context: dict[str, Any] = {
            "who": principal.name,
            "asked": asked,
            "choices": _CHOICES,
            "enquiries": [],
        }
        context["categories"] = desk.categories(conn)
        wrong = _wrong(request, asked, after, since) or _two_meters(meter_id, meter)
        if wrong is not None:
            context["error"] = wrong
            return templates.TemplateResponse(request, "care_desk.html", context, status_code=400)
        chosen = desk.DeskFilter(
            status=status or None,
            priority=priority or None,
            category=category or None,
            source=source or None,
            meter=asked["meter_id"] or None,
            account=account or None,
        )
        position = desk.Position.parse(after) if after else None
        started = desk.parse_since(since) if since else desk.walk_started(conn)  # this page's moment
        assert started is not None  # _wrong said so otherwise
        rows = desk.desk_page(conn, chosen, position, ENQUIRIES_PER_PAGE + 1, started if position else None)
        context["enquiries"] = [Enquiry(**row) for row in rows[:ENQUIRIES_PER_PAGE]]
        context["paged"] = position is not None
        context["changed"] = {row["enquiry_id"] for row in rows[:ENQUIRIES_PER_PAGE] if row["changed"]}
        if position is not None:
            moved = desk.moved_above(conn, chosen, position, started, MOVED_SHOWN + 1)
            context["moved"] = [Enquiry(**row) for row in moved[:MOVED_SHOWN]]
            context["more_moved"] = len(moved) > MOVED_SHOWN
        filters = {name: value for name, value in asked.items() if value}
        context["first_page"] = _link(filters)
        if len(rows) > ENQUIRIES_PER_PAGE:
            last = desk.Position.of(rows[ENQUIRIES_PER_PAGE - 1])
            context["next_page"] = _link({**filters, "after": last.token(), "since": desk.since_token(started)})
        return templates.TemplateResponse(request, "care_desk.html", context)


def _wrong(request: Request, asked: dict[str, str], after: str, since: str) -> str | None:
    """What is wrong with the parameters, said for the page; None when nothing is."""
    not_taken = address_not_taken(request)
    if not_taken is not None:
        return f"{not_taken[:1].upper()}{not_taken[1:]}."
    for name, allowed in _CHOICES.items():
        if asked[name] and asked[name] not in allowed:
            return f"There is no {name} {asked[name]!r}: choose one of {', '.join(allowed)}."
    if len(asked["category"]) > CATEGORY_MAX_LENGTH:
        return f"A category is at most {CATEGORY_MAX_LENGTH} characters."
    made = not after or (desk.Position.parse(after) is not None and desk.parse_since(since) is not None)
    if not made or (since and not after):
        return "That page's link is not one this list made: start again from the first page."
    return None


def _two_meters(meter_id: str, meter: str) -> str | None:
    """Said when the address's meter_id and meter (its older name) name two meters."""
    if meter_id and meter and meter_id != meter:
        return f"The address names two meters, meter_id {meter_id!r} and meter {meter!r}: give one, as meter_id."
    return None


def _link(params: dict[str, str]) -> str:
    return f"{PATH}?{urlencode(params)}" if params else PATH
