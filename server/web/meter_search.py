"""Finding a customer's meter (``/care/meters?meter_id=``): a care agent with a caller on the line
types the meter's id, or part of it, as read off the meter or a bill ("00317", "wm-317"), or the
caller's account number. An exact meter id opens the meter's page (303); otherwise the page lists the
meters fitted now at the service points of the account of that number, in any case as the meter ids
are (before, exactly as written: "acc-7" found nothing for ACC-7), if there is one, and the meters
whose id contains the words typed, in any case, each linked to its page, the first 50 in id order,
saying when there are more. Before,
the only ways to a meter were paging the meters list 500 at a time (at 20,000 meters, 40 pages) or
typing its page's address.

The form is its own page, linked from the meters page and the care desk: the meters page reloads itself
every 10 s, which would wipe an id half typed there. A part of an id is looked for through every id
(``ILIKE``, a scan of ``meters``: 2-7 ms for 20,000 meters, by EXPLAIN ANALYZE); an exact id is its
primary key's look-up. An account's number in any case is a scan of ``service_agreements`` too (``lower()``
on both sides): 1.8 ms median for 20,000 agreements, where the exact number's index look-up took 0.18 ms.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.care.fitted import meters_of_account_now
from server.db import get_connection
from server.web.meter_page import meter_path
from server.web.pages import address_not_taken, error_page, signed_in, templates
from server.web.router import PAGE_ROLES

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)  # pages
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
PATH = "/care/meters"
MATCHES_SHOWN = 50


@router.get(PATH, response_class=HTMLResponse)
def find_meter(request: Request, conn: Connection, meter_id: str = "") -> Response:
    principal = signed_in(request, conn, PAGE_ROLES, "see meters")
    if isinstance(principal, Response):
        return principal
    not_taken = address_not_taken(request)
    if not_taken is not None:
        return error_page(request, 400, not_taken)
    typed = meter_id.strip()
    context: dict[str, Any] = {"who": principal.name, "typed": typed, "matches": [], "more": False}
    if not typed:
        return templates.TemplateResponse(request, "find_meter.html", context)
    if "\x00" in typed:
        context["error"] = "A meter's id has no NUL character: type it as written on the meter or the bill."
        return templates.TemplateResponse(request, "find_meter.html", context, status_code=400)
    if _exists(conn, typed):
        return RedirectResponse(meter_path(typed), status_code=303)
    matches = containing(conn, typed, MATCHES_SHOWN + 1)
    context |= {"matches": matches[:MATCHES_SHOWN], "more": len(matches) > MATCHES_SHOWN}
    context["account_meters"] = meters_of_account_now(conn, typed)
    return templates.TemplateResponse(request, "find_meter.html", context)


def _exists(conn: psycopg.Connection, meter_id: str) -> bool:
    return conn.execute("SELECT 1 FROM meters WHERE meter_id = %s", (meter_id,)).fetchone() is not None


def containing(conn: psycopg.Connection, typed: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` meters whose id contains ``typed`` in any case (its ``%``, ``_`` and ``\\`` as
    themselves), by id, with their district."""
    pattern = "%" + typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return conn.execute(  # type: ignore[return-value]
        "SELECT meter_id, dma FROM meters WHERE meter_id ILIKE %s ORDER BY meter_id LIMIT %s", (pattern, limit)
    ).fetchall()
