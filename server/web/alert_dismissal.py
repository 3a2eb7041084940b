"""Dismissing a false alert from its enquiry's page (``POST /care/enquiries/{id}/dismiss-alert``): the
API's ``POST /alerts/{id}/dismiss`` for a browser without JavaScript, a plain form with the reason,
answered 303 back to the enquiry's page, where the alert then shows dismissed, by whom and why, and its
enquiry's updates say so (the enquiry stays as it was, for the person to close once the customer is
told). Before, a care agent could dismiss an alert only with curl and a key.

For the keys that dismiss alerts in the API (customer care, meterization, and admin); another key's
POST is a 403 on the page, and so is another site's form (server.origins, as every form's). A reason
that says nothing (the API's words field, 3 to 500 characters) is a 422, the words kept in the form;
an alert dismissed already (a colleague did, or the same form was sent twice) is a 409 that says by
whom and why, nothing written again.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from collector import alert_store
from collector.detection.alerts import Alert
from server.alerts.dismissal import DISMISSES_ALERTS, REASON_MAX_LENGTH, Dismissal, dismiss_as
from server.auth import may, refusal
from server.care import repository
from server.care.router import READS_ENQUIRIES
from server.db import get_connection
from server.origins import from_another_site
from server.web.enquiries import PATH, enquiry_answer, enquiry_number, enquiry_path
from server.web.pages import signed_in

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)  # pages
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
DISMISS_PATH = f"{PATH}/dismiss-alert"
REASON_SAID = (
    f"Not dismissed: a reason is 3 to {REASON_MAX_LENGTH} characters with a word in it (a letter or a digit), "
    "and no NUL: say why no action is needed."
)


@router.post(DISMISS_PATH)
def dismiss_alert(enquiry_id: str, request: Request, conn: Connection, reason: Annotated[str, Form()] = "") -> Response:
    principal = signed_in(request, conn, READS_ENQUIRIES, "see enquiries")
    if isinstance(principal, Response):
        return principal
    if from_another_site(request):  # nothing of that form is shown back
        refused = "Not dismissed: that form was sent from another site. Dismiss alerts on this page."
        return enquiry_answer(request, conn, principal, enquiry_id, dismiss_error=refused, status_code=403)
    form = {"reason": reason}
    if not may(principal, *DISMISSES_ALERTS):
        refused = f"Not dismissed: {refusal(principal, DISMISSES_ALERTS, 'dismiss alerts')}."
        return enquiry_answer(request, conn, principal, enquiry_id, dismiss_error=refused, status_code=403)
    number = enquiry_number(enquiry_id)
    row = repository.get_enquiry(conn, number) if number is not None else None
    if row is None:  # the page says there is no such enquiry, and that nothing was saved
        return enquiry_answer(request, conn, principal, enquiry_id, form=form)
    if row["alert_id"] is None:
        said = f"Not dismissed: enquiry #{number} was not raised by an alert, so it has none to dismiss."
        return enquiry_answer(request, conn, principal, enquiry_id, dismiss_error=said, status_code=409)
    try:
        dismissal = Dismissal.model_validate({"reason": reason})
    except ValidationError:
        return enquiry_answer(
            request, conn, principal, enquiry_id, dismiss_error=REASON_SAID, status_code=422, form=form
        )
    try:
        alert = dismiss_as(conn, principal, row["alert_id"], dismissal.reason)
    except ValueError:  # dismissed already
        said = _dismissed_already(conn, row["alert_id"])
        return enquiry_answer(request, conn, principal, enquiry_id, dismiss_error=said, status_code=409, form=form)
    if alert is None:  # the enquiry's alert is gone (alert_id references alerts: it cannot be)
        said = f"Not dismissed: there is no alert {row['alert_id']}."
        return enquiry_answer(request, conn, principal, enquiry_id, dismiss_error=said, status_code=404, form=form)
    return RedirectResponse(enquiry_path(row["enquiry_id"]), status_code=303)


def _dismissed_already(conn: psycopg.Connection, alert_id: str) -> str:
    found: list[Alert] = alert_store.alerts_by_id(conn, [alert_id])
    said = "Not dismissed again: the alert was dismissed already"
    if found and found[0].dismissed_at is not None:
        alert = found[0]
        said += f", {alert.dismissed_at:%Y-%m-%d %H:%M:%S} UTC by {alert.dismissed_by} (“{alert.dismiss_reason}”)"
    return f"{said}. Nothing was written."
