"""An enquiry's page: the enquiry and its updates (who, when, what), and for a key that works
enquiries (customer_care, or admin) a form to move it along and/or add a note.

The form is the API's ``POST /enquiries/{id}/updates`` for a browser without JavaScript: a plain
form POST, answered with a redirect back to the page (303) once saved. It goes through the same
repository, workflow and words field as the API, and is refused when another site started it
(:func:`server.origins.from_another_site`, as the sign-in is). A move the workflow refuses, a note
that says nothing, or an unknown enquiry is a message on the page (409, 422, 404), the person's
words kept in the form. To the same keys it shows what an enquiry raised through Open311 was raised with,
the person's contact details among it (server.care.router.SEES_CONTACTS); the other readers see none of it.
The page does not refresh itself (the meters page does, every 10 s): what
someone is typing here stays until they send it.

The form carries the enquiry's ``updated_at`` as the page showed it: when the enquiry has changed
since (a colleague closed it, or the same form was sent twice), nothing is saved and the page, as it
is now, says so (409), the person's words kept in the form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from collector import alert_store
from server.alerts.dismissal import DISMISSES_ALERTS
from server.auth import Principal, may, refusal
from server.care import desk, repository
from server.care.router import READS_ENQUIRIES, WORKS_ENQUIRIES, with_updates
from server.care.schemas import EnquiryChange
from server.care.workflow import TRANSITIONS, TransitionRefused
from server.db import get_connection
from server.origins import from_another_site
from server.snapshot import one_moment
from server.web.pages import address_not_taken, error_page, signed_in, templates

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)  # pages
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
PATH = "/care/enquiries/{enquiry_id}"
_ID = re.compile(r"[1-9][0-9]{0,17}")  # a bigint's digits; anything else names no enquiry
NEVER = datetime.min.replace(tzinfo=UTC)  # a version no enquiry has
CHANGED_SINCE = (
    "Not saved: this enquiry changed after the page was loaded (a colleague's update, or this form sent "
    "twice). Here it is as it is now, with what you wrote: check its updates, then save again if still needed."
)


def enquiry_path(enquiry_id: int) -> str:
    return PATH.format(enquiry_id=enquiry_id)


@router.get(PATH, response_class=HTMLResponse)
def enquiry_page(enquiry_id: str, request: Request, conn: Connection) -> Response:
    principal = signed_in(request, conn, READS_ENQUIRIES, "see enquiries")
    if isinstance(principal, Response):
        return principal
    not_taken = address_not_taken(request)
    if not_taken is not None:
        return error_page(request, 400, not_taken)
    return enquiry_answer(request, conn, principal, enquiry_id)


@router.post(PATH)
def work_enquiry(
    enquiry_id: str,
    request: Request,
    conn: Connection,
    status: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    updated_at: Annotated[str, Form()] = "",
    priority: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
) -> Response:
    principal = signed_in(request, conn, READS_ENQUIRIES, "see enquiries")
    if isinstance(principal, Response):
        return principal
    if from_another_site(request):  # nothing of that form is shown back
        refused = "Not saved: that form was sent from another site. Work enquiries on this page."
        return enquiry_answer(request, conn, principal, enquiry_id, error=refused, status_code=403)
    form = {"status": status, "note": note, "priority": priority, "category": category}
    if not may(principal, *WORKS_ENQUIRIES):
        refused = f"Not saved: {refusal(principal, WORKS_ENQUIRIES, 'work enquiries')}."
        return enquiry_answer(request, conn, principal, enquiry_id, error=refused, status_code=403)
    number = enquiry_number(enquiry_id)
    if number is None:
        return enquiry_answer(request, conn, principal, enquiry_id, form=form)
    change = _change(form)
    if isinstance(change, str):
        return enquiry_answer(request, conn, principal, enquiry_id, error=change, status_code=422, form=form)
    try:
        row = repository.change_enquiry(
            conn,
            number,
            by=principal.name,
            by_key_id=principal.key_id,
            status=change.status,
            note=change.note,
            shown_updated_at=_shown(updated_at),
            priority=change.priority,
            category=change.category,
        )
    except TransitionRefused as refused:  # in the page's words: "in progress", as its list of moves says it
        said = f"Not saved: {str(refused).replace('_', ' ')}."
        return enquiry_answer(request, conn, principal, enquiry_id, error=said, status_code=409, form=form)
    except repository.UnknownCategory:
        said = "Not saved: choose the new category from the list."
        return enquiry_answer(request, conn, principal, enquiry_id, error=said, status_code=422, form=form)
    except repository.ChangedSince:
        return enquiry_answer(request, conn, principal, enquiry_id, error=CHANGED_SINCE, status_code=409, form=form)
    if row is None:
        return enquiry_answer(request, conn, principal, enquiry_id, form=form)
    return RedirectResponse(enquiry_path(number), status_code=303)


def _shown(updated_at: str) -> datetime:
    """The form's version of the enquiry; a form without one (or with one no page wrote) is taken
    as older than any, so it saves nothing."""
    try:
        shown = datetime.fromisoformat(updated_at)
    except ValueError:
        return NEVER
    return shown if shown.tzinfo is not None else NEVER


def enquiry_number(enquiry_id: str) -> int | None:
    return int(enquiry_id) if _ID.fullmatch(enquiry_id) else None


def _change(form: dict[str, str]) -> EnquiryChange | str:
    """The form's fields as the API's body (a blank note is no note, a blank status, priority or
    category no change), or what is wrong with them."""
    fields: dict[str, str | None] = {name: form[name] or None for name in ("status", "priority", "category")}
    fields["note"] = form["note"] if form["note"].strip() else None
    try:
        return EnquiryChange.model_validate(fields)
    except ValidationError as error:
        return "Not saved: " + "; ".join(_say(detail["loc"]) for detail in error.errors()) + "."


def _say(location: tuple[int | str, ...]) -> str:
    if location == ("note",):
        return "a note is 3 to 2000 characters with a word in it (a letter or a digit), and no NUL"
    if location in (("status",), ("priority",), ("category",)):
        return f"choose the new {location[0]} from the list"
    return "choose a new status, priority or category, or write a note"


def enquiry_answer(
    request: Request,
    conn: psycopg.Connection,
    principal: Principal,
    enquiry_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
    dismiss_error: str | None = None,
) -> Response:
    """The enquiry's page as it is now, with ``error`` said above its form (``dismiss_error`` by its
    alert's); 404 for no such enquiry. Its alert is shown as it is now (open, resolved, or dismissed by
    whom and why), with a form to dismiss it for a key that may. The enquiry, its updates and its alert
    are read as of one moment (server.snapshot): an alert dismissed meanwhile shows with its note."""
    with one_moment(conn):
        return _enquiry_answer(request, conn, principal, enquiry_id, error, status_code, form, dismiss_error)


def _enquiry_answer(
    request: Request,
    conn: psycopg.Connection,
    principal: Principal,
    enquiry_id: str,
    error: str | None,
    status_code: int,
    form: dict[str, str] | None,
    dismiss_error: str | None,
) -> Response:
    number = enquiry_number(enquiry_id)
    row = repository.get_enquiry(conn, number) if number is not None else None
    context: dict[str, Any] = {"who": principal.name, "error": error, "form": form or {}, "asked": enquiry_id}
    context["dismiss_error"] = dismiss_error
    if row is None:  # a refusal (403) says why, whichever form it refused; otherwise that there is no such enquiry
        context["error"] = error or dismiss_error
        if status_code != 403:
            status_code, saved = 404, ": nothing was saved" if form else ""
            context["error"] = f"There is no enquiry {enquiry_id}{saved}."
        return templates.TemplateResponse(request, "enquiry.html", context, status_code=status_code)
    enquiry = with_updates(conn, row, principal)  # what it was raised with, for customer care's keys
    context["enquiry"] = enquiry
    context["moves"] = sorted(TRANSITIONS[enquiry.status]) if may(principal, *WORKS_ENQUIRIES) else None
    context["priorities"] = desk.PRIORITIES
    context["categories"] = desk.categories(conn) if context["moves"] is not None else []
    alerts = alert_store.alerts_by_id(conn, [enquiry.alert_id]) if enquiry.alert_id is not None else []
    context["alert"] = alerts[0] if alerts else None
    context["dismisses"] = may(principal, *DISMISSES_ALERTS)
    return templates.TemplateResponse(request, "enquiry.html", context, status_code=status_code)
