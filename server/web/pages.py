"""What every page shares: the templates, the headers each page is sent with, the sign-in form, who
the signed-in key is (the API's roles, by :func:`server.auth.may`), and what a page says of an
address whose query it does not take (:func:`address_not_taken`)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote

import psycopg
from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from collector.detection.alerts import AlertSource
from server.auth import SESSION_NOT_A_KEY, Principal, is_session_as_key, may, presented_key, refusal, verify_presented
from server.decimals import fixed_point, volume_m3
from server.query_params import meant, query_names
from server.web.flow import flow_l_h
from server.web.rounding import rounded

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def _fixed(value: Decimal | float) -> str:
    """A number in plain digits as the API sends it, never "1E-7" nor "5e-05"."""
    return fixed_point(value if isinstance(value, Decimal) else Decimal(repr(value)))


def _volume(value: Decimal | float) -> str:
    """A register's volume in m³ to the litre at least, as the register counts and the API's billing
    writes it ("481.130", not "481.13" above "481.124" in the same column), never rounded."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    shown = volume_m3(exact)  # None only for None
    return fixed_point(exact if shown is None else shown)


templates.env.filters["fixed"] = _fixed
templates.env.filters["volume"] = _volume
templates.env.filters["flow_l_h"] = flow_l_h  # a reading's flow on the meters page
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
    if key is not None and is_session_as_key(key):
        return login_page(request, f"{SESSION_NOT_A_KEY[:1].upper()}{SESSION_NOT_A_KEY[1:]}.", 401)
    principal = verify_presented(conn, key) if key is not None and key.value else None
    if principal is None:  # none, or not valid (a session ended, a key revoked since)
        return login_page(request, None, 401)
    if not may(principal, *roles):  # a valid key (billing's) that the API too answers 403
        refused = refusal(principal, roles, what)
        return login_page(request, f"{refused[:1].upper()}{refused[1:]}.", 403, principal.name)
    return principal


def address_not_taken(request: Request) -> str | None:
    """What a signed-in page says of its address's query, when the page does not take one of its
    parameters or is given one twice; None when it takes them all, once each. A page filtered by
    what it does not take would list everything under its filters' look: before, ``/care/enquiries?
    meter_id=M1`` (the API's name, where the desk then took ``meter``) listed every enquiry, 200, and
    ``?status=open&status=closed`` the closed ones only. What a page takes is what its route reads
    (its parameters), so a form's field, a link's or a bookmark's is taken as long as the page reads it."""
    route = request.scope["route"]
    takes = tuple(dict.fromkeys(query_names(route.dependant)))
    given = [name for name, _ in request.query_params.multi_items()]
    unknown = [name for name in dict.fromkeys(given) if name not in takes]
    if unknown:
        near = [f"{name} (did you mean {meant(name, takes)}?)" if meant(name, takes) else name for name in unknown]
        listed = f"it takes {_listed(takes)}" if takes else "it takes none"
        which = "which this page does not take" if len(unknown) == 1 else "which this page takes none of"
        return f"the address asks for {_listed(near)}, {which}: {listed}"
    twice = [name for name, count in Counter(given).items() if count > 1]
    if twice:
        return f"the address gives {_listed(twice)} more than once: give each once"
    return None


def _listed(names: list[str] | tuple[str, ...]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
