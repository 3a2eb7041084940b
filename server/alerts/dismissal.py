"""Dismissing an alert as needing no action (a false alert: the customer filled a pool): who and why,
recorded on the alert and, by trigger, on its enquiry's updates (server migrations 0030, 0047), which
stays as it was for a person to close. The API's ``POST /alerts/{id}/dismiss`` and the enquiry page's
form (server.web.alert_dismissal) both dismiss through :func:`dismiss_as`."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from pydantic import BaseModel

from collector import alert_store
from collector.detection.alerts import Alert
from server.auth import Principal, record_changes_under
from server.words import words_field

#: Who dismisses alerts (``admin`` too, as everywhere).
DISMISSES_ALERTS = ("customer_care", "meterization")
REASON_MAX_LENGTH = 500


class Dismissal(BaseModel):
    reason: str = words_field(
        REASON_MAX_LENGTH, "Why no action is needed: words, not only blanks, marks or invisible characters; no NUL"
    )


def dismiss_as(conn: psycopg.Connection, principal: Principal, alert_id: str, reason: str) -> Alert | None:
    """The alert dismissed under ``principal``'s name and key id, in one transaction; None when there
    is no such alert. Raises ``ValueError`` when it is dismissed already (nothing is written)."""
    with conn.transaction():
        record_changes_under(conn, principal)  # the note on its enquiry is under the key too
        return alert_store.dismiss_alert(
            conn, alert_id, by=principal.name, by_key_id=principal.key_id, reason=reason, now=datetime.now(UTC)
        )
