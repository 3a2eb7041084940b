"""Pages. A browser signs in once with an API key (or a one-time link), and is given a session in an
HttpOnly cookie (``aqs_<secret>``, server.sign_in_links), never the key itself; the API's own role
checks apply to every page.

Every page is sent ``no-store`` (a shared care-desk PC must not show a signed-in page from its
history after sign-out) and may not be framed by another site: server.security_headers, for every
response. A sign-in or sign-out started by
another site (``Sec-Fetch-Site: cross-site``) is refused: otherwise any page could sign a member of
staff in under its own key (login CSRF), and what they then did would be recorded under that name.
Browsers send ``Sec-Fetch-Site`` only to https and localhost origins, so for a server on a LAN host
over plain HTTP the request's ``Origin`` (or, with neither, its ``Referer``) is checked too: from
another origin than the server's own (scheme, host and port of the request), it is refused.

A one-time sign-in link (``GET /login?token=``, server.sign_in_links: ``aquami server
sign-in-link`` makes one, the demo prints one) carries no ``Origin``, and a page can send it without
a ``Referer``: it signs in at once only when the browser says the address was opened directly
(``Sec-Fetch-Site: none``, typed or pasted) or came from this server's own page (``same-origin``).
Otherwise (no such header on plain HTTP, or another origin of the same site or another site) it asks
"Sign in as <name>?", leaving the link unused, and the answer is a POST of the server's own form,
whose ``Origin`` is checked. A link is made only by an administrator's command, so another site
cannot make one of its own to sign a member of staff in with; the question covers one sent to them.

The link the demo printed before, ``GET /login?key=<API key>``, is still answered, the same way (and
with a session in the cookie, as the form), so that one bookmarked or written in a runbook keeps
working; it is no longer printed nor documented, as it leaves the key itself in the browser's history
(the access log hides it: server.access_log).

A browser signed in before sessions holds the key in its cookie: that cookie keeps working until it
expires (12 hours after its sign-in: SESSION_LIFETIME) or signs out, so no desk is signed out mid-shift by an
upgrade; refusing it would not take the key out of a cookie store already copied, and the key works
as a Bearer key on the API anyway. No new cookie holds a key.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector import alert_store
from collector.detection.alerts import FLOW_KINDS
from server import sign_in_links
from server.auth import SESSION_COOKIE, SESSION_LIFETIME, SESSION_PREFIX, Principal, may, verify_api_key
from server.care import repository as care_repository
from server.care.router import WORKS_ENQUIRIES
from server.db import get_connection, lend_to_request
from server.meters import repository
from server.meters.schemas import meter_from_row
from server.origins import from_another_site
from server.problems import Problem
from server.snapshot import one_moment
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


def _sign_in(request: Request, session: str) -> Response:
    """To the meters page, with the cookie set: a session (``aqs_<secret>``) the form, a one-time link
    or the old key link opened, never a key (SESSION_LIFETIME: server.auth)."""
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
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
    with one_moment(conn):  # the alerts listed as of the moment they were ranked (server.snapshot)
        return _meters_answer(request, conn, principal, after)


def _meters_answer(request: Request, conn: psycopg.Connection, principal: Principal, after: str | None) -> Response:
    """The meters page after the meter ``after``, with the most urgent active alerts."""
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
    principal = verify_api_key(conn, key.strip())
    if principal is None:
        return login_page(request, "That key is not valid.", 401)
    session = sign_in_links.session_for_key(conn, principal)
    return _sign_in(request, session)


@router.get("/login")
def login_link(request: Request, conn: Connection, key: str | None = None, token: str | None = None) -> Response:
    """A one-time sign-in link (``token``), or the old link carrying the key (``key``, kept for links
    already bookmarked): opened directly, it signs in and moves the token or key out of the address
    bar; sent by any other page, it asks first (see above). Without either (a bookmark) it is the
    sign-in form."""
    if token is not None:
        return _one_time_link(request, conn, token)
    if key is None:
        return login_page(request, None, 200)
    principal = verify_api_key(conn, key)
    if principal is None:
        return login_page(request, "That key is not valid.", 401)
    if request.headers.get("sec-fetch-site", "").lower() in _OPENED_HERE:
        session = sign_in_links.session_for_key(conn, principal)
        return _sign_in(request, session)
    context = {"name": principal.name, "field": "key", "value": key, "action": "/login"}
    return templates.TemplateResponse(request, "confirm_sign_in.html", context)


def _one_time_link(request: Request, conn: psycopg.Connection, token: str) -> Response:
    if request.headers.get("sec-fetch-site", "").lower() not in _OPENED_HERE:
        name = sign_in_links.link_key_name(conn, token)  # asked first: the link stays unused
        if isinstance(name, sign_in_links.Refusal):
            return _link_refused(request, name)
        context = {"name": name, "field": "token", "value": token, "action": "/login/link"}
        return templates.TemplateResponse(request, "confirm_sign_in.html", context)
    return _redeem(request, conn, token)


def _redeem(request: Request, conn: psycopg.Connection, token: str) -> Response:
    redeemed = sign_in_links.redeem(conn, token)
    if isinstance(redeemed, sign_in_links.Refusal):
        return _link_refused(request, redeemed)
    return _sign_in(request, redeemed.session)


def _link_refused(request: Request, why: sign_in_links.Refusal) -> Response:
    """The sign-in form, saying why the link signs no one in and how to get a new one: 410 for a link
    that did sign in or could have (used, expired, its key revoked), 401 for one never made here."""
    return login_page(request, why.said(), 401 if why is sign_in_links.Refusal.UNKNOWN else 410)


@router.post("/login/link")
def login_link_confirmed(request: Request, conn: Connection, token: Annotated[str, Form()]) -> Response:
    """The answer to "Sign in as <name>?" for a one-time link not opened directly."""
    if from_another_site(request):
        return login_page(request, "Sign in here, not from another site's form.", 403)
    return _redeem(request, conn, token)


@router.post("/logout")
def logout(request: Request) -> Response:
    if from_another_site(request):
        return RedirectResponse("/", status_code=303)  # signed in still
    _end_session(request)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _end_session(request: Request) -> None:
    """End the session the cookie holds, so that the cookie, copied before, signs in no more.
    The cookie is deleted whatever the database says: signing out of a shared PC does not wait on it
    (a session not ended expires with its cookie's lifetime)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if not session.startswith(SESSION_PREFIX):
        return
    pool = request.app.state.pool
    try:
        conn = lend_to_request(request)
    except Problem:  # no connection in time: the database away
        return
    try:
        sign_in_links.end_session(conn, session)
    except psycopg.Error:
        pass
    finally:
        pool.putconn(conn)
