"""Pages. A browser signs in once with an API key, kept in an HttpOnly cookie; the API's own
role checks apply to every page.

Every page is sent ``no-store`` (a shared care-desk PC must not show a signed-in page from its
history after sign-out) and may not be framed by another site: server.security_headers, for every
response. A sign-in or sign-out started by
another site (``Sec-Fetch-Site: cross-site``) is refused: otherwise any page could sign a member of
staff in under its own key (login CSRF), and what they then did would be recorded under that name.
Browsers send ``Sec-Fetch-Site`` only to https and localhost origins, so for a server on a LAN host
over plain HTTP the request's ``Origin`` (or, with neither, its ``Referer``) is checked too: from
another origin than the server's own (scheme, host and port of the request), it is refused.

The sign-in link (``GET /login?key=``) carries no ``Origin``, and a page can send it without a
``Referer``: it signs in at once only when the browser says the address was opened directly
(``Sec-Fetch-Site: none``, typed or pasted) or came from this server's own page (``same-origin``).
Otherwise (no such header on plain HTTP, or another origin of the same site or another site) it asks
"Sign in as <name>?", and the answer is the sign-in form's POST, whose ``Origin`` is checked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector import alert_store
from collector.detection.alerts import FLOW_KINDS
from server.auth import SESSION_COOKIE, may, verify_api_key
from server.care import repository as care_repository
from server.care.router import WORKS_ENQUIRIES
from server.db import get_connection
from server.meters import repository
from server.meters.schemas import meter_from_row
from server.origins import from_another_site
from server.web.pages import address_not_taken, error_page, login_page, signed_in, templates

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)  # pages
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
PAGE_ROLES = ("reader", "meterization", "customer_care")  # and admin, as everywhere
METERS_PER_PAGE = 500
ALERTS_SHOWN = 25
#: The page's heading counts the active alerts up to this many, then says "more than" it.
ALERTS_COUNTED = 1000


# What a browser says of an address typed or pasted (none), or a link on this server's own page.
_OPENED_HERE = {"none", "same-origin"}


#: How long a browser stays signed in: a shift. Without ``Max-Age`` the cookie lasted until the browser
#: closed, which a care-desk PC left on never does, and for ever where the browser restores its last
#: session. 12 hours covers a day shift or a night shift whole, so no one is signed out mid-call, and a
#: PC left signed in overnight is not the next morning. The browser drops the cookie; the key itself
#: stays valid until revoked (``aquami server revoke-key``), as it does for the API.
SESSION_LIFETIME = timedelta(hours=12)


def _sign_in(request: Request, response: Response, key: str) -> Response:
    response.set_cookie(
        SESSION_COOKIE,
        key,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/", response_class=HTMLResponse)
def meters_page(
    request: Request,
    conn: Connection,
    after: Annotated[str | None, Query(description="meter id the page continues after")] = None,
) -> Response:
    principal = signed_in(request, conn, PAGE_ROLES, "see meters")
    if isinstance(principal, Response):
        return principal
    not_taken = address_not_taken(request)
    if not_taken is not None:
        return error_page(request, 400, not_taken)
    rows = repository.list_meters(conn, after, METERS_PER_PAGE + 1)
    meters = [meter_from_row(row) for row in rows[:METERS_PER_PAGE]]
    summary = repository.fleet_summary(conn)
    most_urgent = care_repository.most_urgent_active_alert_ids(conn, ALERTS_SHOWN + 1)
    alerts = alert_store.alerts_by_id(conn, most_urgent[:ALERTS_SHOWN])
    # counted only when more are active than shown, and only so far: the heading says "more than 1000"
    more = len(most_urgent) > ALERTS_SHOWN
    context = {
        "meters": meters,
        "next_after": meters[-1].meter_id if len(rows) > METERS_PER_PAGE else None,
        "paged": after is not None,
        "meters_per_page": METERS_PER_PAGE,
        "summary": summary,
        "who": principal.name,
        "alerts": alerts,
        "active_alerts": care_repository.count_active_alerts(conn, ALERTS_COUNTED) if more else len(alerts),
        "alerts_counted": ALERTS_COUNTED,
        "enquiries": care_repository.enquiries_for_alerts(conn, [a.alert_id for a in alerts]),
        "flow_kinds": FLOW_KINDS,
        "works_enquiries": may(principal, *WORKS_ENQUIRIES),
    }
    return templates.TemplateResponse(request, "meters.html", context)


@router.post("/login")
def login_form(request: Request, conn: Connection, key: Annotated[str, Form()]) -> Response:
    if from_another_site(request):
        return login_page(request, "Sign in here, not from another site's form.", 403)
    if verify_api_key(conn, key.strip()) is None:
        return login_page(request, "That key is not valid.", 401)
    return _sign_in(request, RedirectResponse("/", status_code=303), key.strip())


@router.get("/login")
def login_link(request: Request, conn: Connection, key: str | None = None) -> Response:
    """The demo prints a sign-in link; opened directly, it sets the cookie and moves the key out of the
    address bar; sent by any other page, it asks first (see above). Without a key (a bookmark) it is
    the sign-in form."""
    if key is None:
        return login_page(request, None, 200)
    principal = verify_api_key(conn, key)
    if principal is None:
        return login_page(request, "That key is not valid.", 401)
    if request.headers.get("sec-fetch-site", "").lower() in _OPENED_HERE:
        return _sign_in(request, RedirectResponse("/", status_code=303), key)
    return templates.TemplateResponse(request, "confirm_sign_in.html", {"name": principal.name, "key": key})


@router.post("/logout")
def logout(request: Request) -> Response:
    if from_another_site(request):
        return RedirectResponse("/", status_code=303)  # signed in still
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
