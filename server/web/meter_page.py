"""A meter's page (/care/meters/{meter_id}): what the meters API says of it (DMA, registered or new,
bulk, role, gateways, offline), where it is fitted now and the account it serves (server.care.fitted:
before, a care agent on the meter's page could not see whose meter it was), when it has been known and
its first reading, its daily consumption
over the last 30 stored days as a bar chart with a table beside it (estimated and edited days
marked), its latest readings newest first (48 to a page, ``before`` the last one shown; a correction
confirmed past a check says so, which check, who and when: "confirmed out of sequence by Bea on …",
where before the page showed "edited by Bea" alone, as for a value the checks took), and its
alerts, the active ones first, each with its enquiry, and every enquiry that names the meter (its
alerts', staff's, Open311's), in the care desk's order. Before, a meter's id on the meters page
linked to ``/meters/{id}/readings``, the JSON API: a person clicking it got raw JSON.

Beside where the meter is fitted, its withdrawn installations (``aquami server withdraw-installation``:
recorded in error), the latest withdrawn first, up to ten: the service point and dates they said,
who withdrew each, when and why, and whether it was reinstated. Before, the page did not show them:
an agent looking at a meter whose installation had been taken back saw no trace of it.

"Known since" is when the meter's row was made (``meters.first_seen``: registered by meterization, or
first heard on the network, whichever came first) and "First reading" its oldest stored reading. Before,
the page showed the first as "First seen", which a person reads as the first reading: a meter
registered after years of its readings were loaded said it was first seen that day.

A meter no row of ``meters`` holds (removed from the network since) may still be named by enquiries
and alerts, which link here: the page answers 404, says the meter is not on the network, and lists
the enquiries and alerts that name it. Before, it was the bare 404 page. Its withdrawn installations
(kept in ``withdrawn_installations`` when its row goes) are listed there too: before, the 404 page
left them out, and nothing showed a clerk that installation of the id had been withdrawn.

The enquiries' "all of them" is the care desk filtered by the meter (``/care/enquiries?meter_id=``, the
API's name, where it was ``?meter=``), the
same order over every page; before, it was the API's JSON list, as the desk had no meter filter. The
"as JSON" links are the API's lists filtered by ``meter_id``. Every meter has them: the filters take
an id of any length, as ``meters`` holds one (``text``, unchecked: register-meters took any id until
it checked for the contract's 64 characters, and nothing shortened those stored before). Before, the
filters took 64 characters at most, and the page left out a longer id's links, saying why.

The page is read as of one moment (server.snapshot: one read-only REPEATABLE READ transaction, after
signing in): a reading delivered, or a consumption refresh committed, while it is read shows in every
part (the latest reading, the readings, the chart) or in none. Before, each query saw the database as
it began: a reading delivered between the readings and the chart was counted in the chart's newest day
and missing from the readings.

The address is under ``/care/`` as the care desk's pages are: ``/meters/{id}`` is the API's. Seen
by the keys that read meters in the API (reader, meterization, customer care, and admin): the same
keys read enquiries and alerts. The page does not refresh itself: a reading page moved on under the
reader would lose their place.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from psycopg.rows import tuple_row
from starlette.convertors import register_url_convertor

from aquami.stored_times import aware_utc
from collector import alert_store
from collector.detection.alerts import FLOW_KINDS
from collector.utility_zone import utility_zone_name
from server.auth import Principal, may
from server.care import repository as care_repository
from server.care.fitted import fitted_now, last_removal
from server.care.router import SEES_CONTACTS, WORKS_ENQUIRIES
from server.db import get_connection
from server.meters import repository
from server.meters.paths import MeterIdConvertor
from server.meters.schemas import Reading, meter_from_row
from server.meters.withdrawals import withdrawn_of_meter
from server.snapshot import one_moment
from server.web import care_desk
from server.web.daily_chart import chart
from server.web.pages import address_not_taken, error_page, signed_in, templates
from server.web.router import PAGE_ROLES

register_url_convertor("meter_id", MeterIdConvertor())  # as the API's routes: an id with "/" is one segment
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)  # pages
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
PATH = "/care/meters/{meter_id:meter_id}"
DAYS_SHOWN = 30
READINGS_PER_PAGE = 48
ACTIVE_SHOWN = 25
CLOSED_SHOWN = 10
ENQUIRIES_SHOWN = 25
WITHDRAWN_SHOWN = 10
#: A check a person overrode confirming a correction (readings.quality_overrode, server migration
#: 0066), in a care agent's words: what the value was confirmed as, and what that check refuses.
OVERRODE_SAID = {
    "out_of_sequence": ("out of sequence", "below the reading before it or above the one after"),
    "faster_than_the_meter": (
        "faster than the meter",
        "further above the reading before it than the meter can pass in the time between",
    ),
}
_ACTIVE = ("open", "ongoing")
_CLOSED = ("resolved", "dismissed")


def meter_path(meter_id: str) -> str:
    """The page's address for a meter: its id one path segment ("A/B" as "A%2FB")."""
    return f"/care/meters/{quote(meter_id, safe='')}"


@router.get(PATH, response_class=HTMLResponse)
def meter_page(meter_id: str, request: Request, conn: Connection, before: str = "") -> Response:
    principal = signed_in(request, conn, PAGE_ROLES, "see meters")
    if isinstance(principal, Response):
        return principal
    not_taken = address_not_taken(request)  # ?days=90 was ignored: the page's 30 days, as if asked
    if not_taken is not None:
        return error_page(request, 400, not_taken)
    with one_moment(conn):  # every part as of one moment (server.snapshot): signing in, above, reads only
        return _page(request, conn, principal, meter_id, before)


def _page(request: Request, conn: psycopg.Connection, principal: Principal, meter_id: str, before: str) -> Response:
    """The page of the meter (404 without its row), its readings ``before`` the cursor."""
    row = repository.get_meter(conn, meter_id)
    cursor = _before(before) if row is not None else None  # an unknown meter's page has no readings
    if isinstance(cursor, str):
        return error_page(request, 400, cursor)
    active = alert_store.list_alerts(conn, status=_ACTIVE, meter_id=meter_id, limit=ACTIVE_SHOWN + 1)
    closed = alert_store.list_alerts(conn, status=_CLOSED, meter_id=meter_id, limit=CLOSED_SHOWN)
    shown = active[:ACTIVE_SHOWN] + closed
    about = care_repository.enquiries_about_meter(conn, meter_id, ENQUIRIES_SHOWN + 1)
    withdrawn = withdrawn_of_meter(conn, meter_id, WITHDRAWN_SHOWN + 1)  # kept when the meter's row is gone
    context: dict[str, Any] = {
        "who": principal.name,
        "meter_id": meter_id,
        "active": active[:ACTIVE_SHOWN],
        "more_active": len(active) > ACTIVE_SHOWN,
        "closed": closed,
        "all_alerts": _as_json("/alerts", meter_id),
        "enquiries": care_repository.enquiries_for_alerts(conn, [a.alert_id for a in shown]),
        "about": about[:ENQUIRIES_SHOWN],
        "more_about": len(about) > ENQUIRIES_SHOWN,
        "all_about": _as_json("/enquiries", meter_id),
        "desk_about": _on_the_desk(meter_id),
        "flow_kinds": FLOW_KINDS,
        "works_enquiries": may(principal, *WORKS_ENQUIRIES),
        "first_page": meter_path(meter_id),
        "withdrawn": withdrawn[:WITHDRAWN_SHOWN],
        "more_withdrawn": len(withdrawn) > WITHDRAWN_SHOWN,
    }
    if row is None:
        return templates.TemplateResponse(request, "meter.html", {**context, "meter": None}, status_code=404)
    meter = meter_from_row(row)
    # where its readings' look starts; none (within the page's one moment, no latest reading is no
    # reading at all): not looked for, where the look ran its ~10 spans back to the calendar's start
    rows = (
        []
        if meter.latest is None
        else repository.readings_newest_first(conn, meter_id, cursor, READINGS_PER_PAGE + 1, meter.latest.ts)
    )
    readings = [Reading(**reading) for reading in rows[:READINGS_PER_PAGE]]
    zone = utility_zone_name(conn)
    first = repository.first_reading(conn, meter_id) if meter.latest is not None else None  # None: has none
    fitted = fitted_now(conn, meter_id)
    context |= {
        "meter": meter,
        "fitted": fitted,
        "removed": None if fitted is not None else last_removal(conn, meter_id),
        "sees_contacts": may(principal, *SEES_CONTACTS),
        "first_reading": None if first is None else Reading(**first),
        "chart": chart(repository.daily_consumption(conn, meter_id, DAYS_SHOWN), _today(conn)),
        "days_shown": DAYS_SHOWN,
        "zone": zone,  # the days' calendar
        "readings": readings,
        "paged": cursor is not None,
        "older": _older(meter_id, readings[-1].ts) if len(rows) > READINGS_PER_PAGE else None,
        "readings_per_page": READINGS_PER_PAGE,
        "overrode_said": OVERRODE_SAID,
    }
    return templates.TemplateResponse(request, "meter.html", context)


def _today(conn: psycopg.Connection) -> date:
    """The utility's day now: its consumption so far is not the day's. Asked of PostgreSQL, whose
    calendar made the days: Python's ``ZoneInfo`` of the zone's name failed (a 500) where PostgreSQL
    knows a name this Python's time zone data does not (``posixrules``, in pg_timezone_names and not
    in the tzdata package a Python without the system's zone files reads, or a zone newer than it)."""
    row = conn.cursor(row_factory=tuple_row).execute("SELECT (now() AT TIME ZONE utility_timezone())::date").fetchone()
    assert row is not None  # a SELECT without FROM has its row
    return row[0]


def _as_json(path: str, meter_id: str) -> str:
    """The API's list at ``path`` filtered to the meter."""
    return f"{path}?{urlencode({'meter_id': meter_id})}"


def _on_the_desk(meter_id: str) -> str:
    """The care desk filtered to the meter (its enquiries in the same order, every page)."""
    return f"{care_desk.PATH}?{urlencode({'meter_id': meter_id})}"


def _before(text: str) -> datetime | str | None:
    """The readings page's cursor: the instant, in UTC, the previous page ended at (None: the newest
    page), or what is wrong with it. Read as a stored time is (:func:`aware_utc`): with its UTC offset,
    and refused where Python's ``fromisoformat`` would read it otherwise than ISO 8601 (12.5 as half a
    second past 12:00, not 12:30) or outside the years 1 to 9999 in UTC."""
    if not text:
        return None
    try:
        return aware_utc(text)
    except (ValueError, OverflowError):
        return "that readings page's link is not one this page made: start again from the newest readings"


def _older(meter_id: str, last: datetime) -> str:
    return f"{meter_path(meter_id)}?{urlencode({'before': last.isoformat()})}"
