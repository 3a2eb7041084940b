"""Pages. A browser signs in once with an API key, kept in an HttpOnly cookie; the API's own
role checks apply to every page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from collector import alert_store
from collector.detection.alerts import ACTIVE, FLOW_KINDS
from server.auth import SESSION_COOKIE, presented_key, verify_api_key
from server.care import repository as care_repository
from server.db import get_connection
from server.decimals import fixed_point
from server.meters import repository
from server.meters.schemas import meter_from_row

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.filters["fixed"] = fixed_point  # a register as the API sends it, never "1E-7"
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
PAGE_ROLES = {"admin", "reader", "meterization", "customer_care"}


def _signed_in(request: Request, response: Response, key: str) -> Response:
    response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/", response_class=HTMLResponse)
def meters_page(request: Request, conn: Connection) -> Response:
    key = presented_key(request)
    principal = verify_api_key(conn, key) if key else None
    if principal is None or not principal.roles & PAGE_ROLES:
        error = "This key may not see meters." if principal else None
        return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=401)
    meters = [meter_from_row(row) for row in repository.list_meters(conn, None, 500)]
    summary = repository.fleet_summary(conn)
    alerts = alert_store.list_alerts(conn, status=[s.value for s in ACTIVE], limit=10)
    enquiries = care_repository.enquiries_for_alerts(conn, [a.alert_id for a in alerts])
    context = {
        "meters": meters,
        "summary": summary,
        "who": principal.name,
        "alerts": alerts,
        "enquiries": enquiries,
        "flow_kinds": FLOW_KINDS,
    }
    return templates.TemplateResponse(request, "meters.html", context)


@router.post("/login")
def login_form(request: Request, conn: Connection, key: Annotated[str, Form()]) -> Response:
    if verify_api_key(conn, key.strip()) is None:
        return templates.TemplateResponse(request, "login.html", {"error": "That key is not valid."}, status_code=401)
    return _signed_in(request, RedirectResponse("/", status_code=303), key.strip())


@router.get("/login")
def login_link(request: Request, conn: Connection, key: str) -> Response:
    """The demo prints a sign-in link; it sets the cookie and moves the key out of the address bar."""
    if verify_api_key(conn, key) is None:
        return templates.TemplateResponse(request, "login.html", {"error": "That key is not valid."}, status_code=401)
    return _signed_in(request, RedirectResponse("/", status_code=303), key)


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
