"""All SQL about enquiries (server migration 0030)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from server.care.workflow import TransitionRefused, check_transition, update_note
from server.snapshot import one_moment

ENQUIRY_COLUMNS = """enquiry_id, kind, category, source, status, priority, subject, account_id, service_point_id,
              meter_id, dma, alert_id, opened_at, updated_at, closed_at, duplicate_of"""


def list_enquiries(
    conn: psycopg.Connection,
    *,
    status: str | None,
    source: str | None,
    category: str | None,
    account_id: str | None,
    dma: str | None,
    before: int | None,
    limit: int,
    meter_id: str | None = None,
    priority: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first (by id, which follows opening order), after the keyset cursor ``before``."""
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {ENQUIRY_COLUMNS} FROM enquiries
        WHERE (%(status)s::text IS NULL OR status = %(status)s)
          AND (%(priority)s::text IS NULL OR priority = %(priority)s)
          AND (%(source)s::text IS NULL OR source = %(source)s)
          AND (%(category)s::text IS NULL OR category = %(category)s)
          AND (%(account)s::text IS NULL OR account_id = %(account)s)
          AND (%(dma)s::text IS NULL OR dma = %(dma)s)
          AND (%(meter)s::text IS NULL OR meter_id = %(meter)s)
          AND (%(before)s::bigint IS NULL OR enquiry_id < %(before)s)
        ORDER BY enquiry_id DESC
        LIMIT %(limit)s
        """,
        {
            "status": status,
            "priority": priority,
            "source": source,
            "category": category,
            "account": account_id,
            "dma": dma,
            "meter": meter_id,
            "before": before,
            "limit": limit,
        },
    ).fetchall()


def get_enquiry(conn: psycopg.Connection, enquiry_id: int) -> dict[str, Any] | None:
    """The enquiry, its updates and the enquiries folded into it as its duplicates, as of one moment:
    read in one snapshot, so its status and its history never disagree (an alert's trigger may
    reopen it between two reads)."""
    with one_moment(conn):  # or the moment of the page it is read for (server.web.enquiries)
        row: dict[str, Any] | None = conn.execute(  # type: ignore[assignment]
            f"SELECT {ENQUIRY_COLUMNS} FROM enquiries WHERE enquiry_id = %s", (enquiry_id,)
        ).fetchone()
        if row is None:
            return None
        row["updates"] = conn.execute(
            "SELECT at, by, by_key_id, note FROM enquiry_updates WHERE enquiry_id = %s ORDER BY at, update_id",
            (enquiry_id,),
        ).fetchall()
        folded = conn.execute(  # enquiries_duplicate_of_idx (server migration 0049)
            "SELECT enquiry_id FROM enquiries WHERE duplicate_of = %s ORDER BY enquiry_id", (enquiry_id,)
        ).fetchall()
        row["duplicates"] = [r["enquiry_id"] for r in folded]  # type: ignore[call-overload]
    return row


class ChangedSince(Exception):
    """The enquiry changed after the person was shown it (the API and the page answer 409)."""

    def __init__(self, updated_at: datetime) -> None:
        super().__init__(f"the enquiry changed at {updated_at.isoformat()}, after the version given")
        self.updated_at = updated_at


def change_enquiry(
    conn: psycopg.Connection,
    enquiry_id: int,
    *,
    by: str,
    status: str | None,
    note: str | None,
    by_key_id: str | None = None,
    shown_updated_at: datetime | None = None,
    priority: str | None = None,
    category: str | None = None,
) -> dict[str, Any] | None:
    """A person's update: the new ``status`` (checked against :mod:`server.care.workflow`) and/or a
    ``note``, written on the enquiry's updates with who (``by``, and ``by_key_id``: the id of the API key
    ``by`` names) and when, in one transaction; the
    enquiry with its updates after it, None when there is no such enquiry. Raises TransitionRefused,
    and ChangedSince when ``shown_updated_at`` (the enquiry's ``updated_at`` as the person was shown
    it) is given and the enquiry has changed since: nothing is saved. Every change moves
    ``updated_at`` on, a note alone too, so the same form sent twice saves once.

    A new ``priority`` or ``category`` refiles it, said on the update as a status change is ("priority
    normal → high"); the category must be one of the care desk's (server migration 0043's
    open311_service_list: UnknownCategory otherwise), and either set to what it is already is refused
    (TransitionRefused), as a status is.

    The row is locked first: two people closing and escalating it at once, or an alert's trigger
    reopening it meanwhile (server migration 0033), take turns, each deciding on the status the
    other left."""
    with conn.transaction():
        row: dict[str, Any] | None = conn.execute(  # type: ignore[assignment]
            "SELECT status, priority, category, updated_at FROM enquiries WHERE enquiry_id = %s FOR UPDATE",
            (enquiry_id,),
        ).fetchone()
        if row is None:
            return None
        if shown_updated_at is not None and row["updated_at"] != shown_updated_at:
            raise ChangedSince(row["updated_at"])
        current = row["status"]
        if status is not None:
            check_transition(current, status)
        refiled = _refiled(conn, row, priority, category)
        conn.execute(
            """
            UPDATE enquiries SET status = %(status)s, priority = %(priority)s, category = %(category)s,
                updated_at = greatest(now(), updated_at + interval '1 microsecond'),  -- never the same twice
                closed_at = CASE WHEN %(status)s <> 'closed' THEN NULL WHEN status = 'closed' THEN closed_at
                                 ELSE now() END  -- a note on a closed enquiry leaves when it was closed
            WHERE enquiry_id = %(id)s
            """,
            {
                "status": status or current,
                "priority": priority or row["priority"],
                "category": category or row["category"],
                "id": enquiry_id,
            },
        )
        conn.execute(
            "INSERT INTO enquiry_updates (enquiry_id, by, by_key_id, note) VALUES (%s, %s, %s, %s)",
            (enquiry_id, by, by_key_id, update_note(current, status, note, refiled=refiled)),
        )
    return get_enquiry(conn, enquiry_id)


def enquiries_for_alerts(conn: psycopg.Connection, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The enquiry each alert raised, by alert id."""
    rows: list[dict[str, Any]] = conn.execute(  # type: ignore[assignment]
        "SELECT alert_id, enquiry_id, priority, status FROM enquiries WHERE alert_id = ANY (%s)", (alert_ids,)
    ).fetchall()
    return {row["alert_id"]: row for row in rows}


def enquiries_about_meter(conn: psycopg.Connection, meter_id: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` enquiries that name the meter (raised by its alerts, by staff, through Open311),
    in the care desk's order (server.care.desk): the ones being worked first, urgent to low and the
    newest opened first within each, then the closed ones, newest first. Read through
    enquiries_care_desk_by_meter_idx (server migration 0059, the desk's order within each meter; it
    replaced 0042's enquiries_meter_idx): the cost is that of the meter's own enquiries at most,
    however many others there are."""
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {ENQUIRY_COLUMNS} FROM enquiries
        WHERE meter_id = %(meter)s
        ORDER BY enquiry_care_rank(status, priority) DESC, opened_at DESC, enquiry_id DESC
        LIMIT %(limit)s
        """,
        {"meter": meter_id, "limit": limit},
    ).fetchall()


def most_urgent_active_alert_ids(conn: psycopg.Connection, limit: int) -> list[str]:
    """Active alerts (open, ongoing), the most urgent enquiry first (urgent, high, normal, low, then
    none), then the newest detected, then by id: what a care desk must see first when there are more
    than fit on a page (a burst before a fleet's low batteries). Read off the start of the partial
    index alerts_most_urgent_idx (server migration 0046), whose predicate the WHERE repeats word for
    word: the cost is that of ``limit`` rows, however many alerts are active."""
    rows = conn.execute(
        """
        SELECT alert_id FROM alerts
        WHERE status IN ('open', 'ongoing')
        ORDER BY enquiry_rank, detected_at DESC, alert_id DESC
        LIMIT %s
        """,
        (limit,),
    ).fetchall()
    return [row["alert_id"] for row in rows]  # type: ignore[call-overload]


def count_active_alerts(conn: psycopg.Connection, up_to: int) -> int:
    """How many alerts are active (open, ongoing), counted up to ``up_to`` and one more: a number over
    ``up_to`` means "more than ``up_to``". It stops at ``up_to`` + 1 active alerts (the WHERE is the
    predicate of the partial index alerts_most_urgent_idx, server migration 0046, should the planner
    find them sparse), however many are active: counting them all took 21-68 ms per 100,000, on every
    refresh of the web page."""
    row = conn.execute(
        "SELECT count(*) AS n FROM (SELECT 1 FROM alerts WHERE status IN ('open', 'ongoing') LIMIT %s) active",
        (up_to + 1,),
    ).fetchone()
    return int(row["n"])  # type: ignore[index, call-overload]


class UnknownCategory(ValueError):
    """A category none of the care desk's lists (the API answers 422, the page says so)."""


def _refiled(
    conn: psycopg.Connection, row: dict[str, Any], priority: str | None, category: str | None
) -> tuple[tuple[str, str, str], ...]:
    """The fields a person changes, as (name, was, now); raises when one is set to what it is, or the
    category is none of the desk's."""
    changed = []
    for name, new in (("priority", priority), ("category", category)):
        if new is None:
            continue
        if new == row[name]:
            raise TransitionRefused(f"the enquiry's {name} is already {new}")
        changed.append((name, row[name], new))
    if (
        category is not None
        and conn.execute("SELECT 1 FROM open311_service_list WHERE category = %s LIMIT 1", (category,)).fetchone()
        is None
    ):
        raise UnknownCategory(f"there is no category {category!r}: choose one of the care desk's")
    return tuple(changed)
