"""What every page shares: the templates, the headers each page is sent with, the sign-in form, and
who the signed-in key is (the API's roles, by :func:`server.auth.may`)."""

from __future__ import annotations

from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote

import psycopg
from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from collector.detection.alerts import AlertSource
from server.auth import Principal, may, presented_key, refusal, verify_api_key
from server.decimals import fixed_point
from server.web.rounding import rounded

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def _fixed(value: Decimal | float) -> str:
    """A number in plain digits as the API sends it, never "1E-7" nor "5e-05"."""
    return fixed_point(value if isinstance(value, Decimal) else Decimal(repr(value)))


templates.env.filters["fixed"] = _fixed
templates.env.filters["rounded"] = rounded  # an alert's rate as its enquiry rounds it
templates.env.filters["path_segment"] = lambda text: quote(text, safe="")  # "A?B" → "A%3FB", "/" too
templates.env.globals["meter_source"] = AlertSource.METER


def login_page(request: Request, error: str | None, status_code: int, who: str | None = None) -> Response:
    """The sign-in form, with why it is shown. ``who``: the signed-in key's name, when it may not see
    the page (403): the form there has a sign-out button, as the key stays in the cookie."""
    context = {"error": error, "who": who}
    response = templates.TemplateResponse(request, "login.html", context, status_code=status_code)
    if status_code == 401:  # RFC 9110 §15.5.2: a 401 names how to authenticate, as the API's 401 does
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def error_page(request: Request, status_code: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A refusal the app's handlers make for a page (server.problems: a NUL in its address, a form
    field missing), said on a page: the problem document's detail, as a sentence."""
    context = {"status": status_code, "phrase": HTTPStatus(status_code).phrase, "error": _sentence(detail)}
    return templates.TemplateResponse(request, "error.html", context, status_code=status_code, headers=headers)


def _sentence(detail: str) -> str:
    return f"{detail[:1].upper()}{detail[1:].rstrip('.')}."


def signed_in(request: Request, conn: psycopg.Connection, roles: tuple[str, ...], what: str) -> Principal | Response:
    """The signed-in key when it has one of ``roles`` (or admin); otherwise the sign-in form to
    answer with: a 401 without a valid key, a 403 saying it may not ``what`` for another key."""
    key = presented_key(request)
    principal = verify_api_key(conn, key) if key else None
    if principal is None:  # no key, or one not valid (revoked since it was put in the cookie)
        return login_page(request, None, 401)
    if not may(principal, *roles):  # a valid key (billing's) that the API too answers 403
        refused = refusal(principal, roles, what)
        return login_page(request, f"{refused[:1].upper()}{refused[1:]}.", 403, principal.name)
    return principal
