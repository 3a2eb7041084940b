"""All SQL of the Open311 facade (server migration 0043): services, and enquiries as requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from server.open311.schemas import RequestIn


def list_services(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """People's services in their order, then detection's by category."""
    return conn.execute(  # type: ignore[return-value]
        """
        SELECT l.*, EXISTS (SELECT 1 FROM open311_service_attributes a WHERE a.service_code = l.service_code)
                    AS metadata
        FROM open311_service_list l ORDER BY l.position, l.service_code
        """
    ).fetchall()


def get_service(conn: psycopg.Connection, service_code: str) -> dict[str, Any] | None:
    return conn.execute(  # type: ignore[return-value]
        "SELECT * FROM open311_service_list WHERE service_code = %s", (service_code,)
    ).fetchone()


def service_attributes(conn: psycopg.Connection, service_code: str) -> list[dict[str, Any]]:
    return conn.execute(  # type: ignore[return-value]
        "SELECT * FROM open311_service_attributes WHERE service_code = %s ORDER BY position, code", (service_code,)
    ).fetchall()


@dataclass(frozen=True, slots=True)
class Raised:
    enquiry_id: int
    service_notice: str


def raise_request(
    conn: psycopg.Connection, request: RequestIn, service: dict[str, Any], *, source: str, by: str, by_key_id: str
) -> Raised:
    """The enquiry, what was given with it and its first update (under ``by`` and ``by_key_id``: the
    name and the id of the key that raised it), in one transaction. The account and meter
    references given are linked when they name an account or a meter; kept as given, and said on
    the update (without quoting it), when they do not. The enquiry's subject and first update hold
    none of the person's words: readers see those, and the words are personal data (care keys see
    them in ``given_with``)."""
    account = request.attribute.get("account")
    meter = request.attribute.get("meter")
    with conn.transaction():
        known = conn.execute(
            """
            SELECT (SELECT account_id FROM accounts WHERE account_id = %(account)s) AS account_id,
                   (SELECT meter_id FROM meters WHERE meter_id = %(meter)s) AS meter_id,
                   (SELECT dma FROM meters WHERE meter_id = %(meter)s) AS dma
            """,
            {"account": account, "meter": meter},
        ).fetchone()
        assert known is not None
        linked: dict[str, Any] = dict(known)
        try:
            with conn.transaction():  # a savepoint: the enquiry is stored without the meter if refused
                enquiry_id = _new_enquiry(conn, service, source, linked)
        except psycopg.errors.ProgramLimitExceeded:
            # a meter stored before register-meters checked ids and districts, whose id or district
            # meters' indexes hold but the enquiries' do not (over some 2,650 bytes that do not
            # compress): before, a 503 ("the database connection was lost") and nothing stored
            if linked["meter_id"] is None:
                raise
            linked |= {"meter_id": None, "dma": None, "unlinkable": True}
            enquiry_id = _new_enquiry(conn, service, source, linked)
        conn.execute(
            """
            INSERT INTO open311_requests (enquiry_id, service_code, description, lat, long, address_string,
                address_id, media_url, email, first_name, last_name, phone, attributes, raised_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                enquiry_id,
                service["service_code"],
                request.description,
                request.lat,
                request.long,
                request.address_string,
                request.address_id,
                request.media_url,
                request.email,
                request.first_name,
                request.last_name,
                request.phone,
                Jsonb(request.attribute),
                by,
            ),
        )
        conn.execute(
            "INSERT INTO enquiry_updates (enquiry_id, by, by_key_id, note) VALUES (%s, %s, %s, %s)",
            (enquiry_id, by, by_key_id, _first_note(source, account, meter, linked)),
        )
    return Raised(enquiry_id, service["service_notice"])


def _new_enquiry(conn: psycopg.Connection, service: dict[str, Any], source: str, linked: dict[str, Any]) -> int:
    row = conn.execute(
        """
        INSERT INTO enquiries (kind, category, source, priority, subject, account_id, meter_id, dma)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING enquiry_id
        """,
        (
            service["kind"],
            service["category"],
            source,
            service["priority"],
            _subject(service["service_name"], linked["account_id"], linked["meter_id"]),
            linked["account_id"],
            linked["meter_id"],
            linked["dma"],
        ),
    ).fetchone()
    assert row is not None
    return int(row["enquiry_id"])  # type: ignore[call-overload]


def _subject(service_name: str, account_id: str | None, meter_id: str | None) -> str:
    """The service's name, and the account and meter the request was linked to: never the
    description (server migration 0051 rewrote the subjects that quoted it)."""
    linked = [f"{what} {ref}" for what, ref in (("account", account_id), ("meter", meter_id)) if ref is not None]
    return f"{service_name} ({', '.join(linked)})" if linked else service_name


def _first_note(source: str, account: str | None, meter: str | None, linked: dict[str, Any]) -> str:
    """Says a reference matched nothing, or named a meter the enquiry could not be linked to,
    without quoting it: whatever was typed there is the person's words (customer care sees it in
    what the request was raised with)."""
    said = [f"raised through Open311 ({source})"]
    if account is not None and linked["account_id"] is None:
        said.append("an account reference was given that matches no account (see the request's details)")
    if linked.get("unlinkable"):
        said.append(
            "the meter named is not linked: its id or district is too long for the enquiries' indexes "
            "(see the request's details)"
        )
    elif meter is not None and linked["meter_id"] is None:
        said.append("a meter reference was given that matches no meter (see the request's details)")
    return "; ".join(said)


_REQUEST_COLUMNS = """
    o.enquiry_id, o.status, o.subject, o.opened_at, o.updated_at, o.service_code, o.description, o.lat, o.long,
    o.address_string, o.address_id, o.media_url, o.latest_note, l.service_name, l.service_notice,
    EXISTS (SELECT FROM open311_requests r WHERE r.enquiry_id = o.enquiry_id) AS raised_through_open311
"""


def list_requests(
    conn: psycopg.Connection,
    *,
    ids: list[int] | None,
    service_codes: list[str] | None,
    statuses: list[str] | None,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first. ``ids``, when given, are the whole query (GeoReport v2: "This overrides all
    other arguments"); otherwise enquiries opened in ``[start, end]`` of the codes and open/closed
    statuses given (all when None)."""
    where = "o.enquiry_id = ANY (%(ids)s)" if ids is not None else _WINDOW
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {_REQUEST_COLUMNS}
        FROM open311_enquiries o LEFT JOIN open311_service_list l USING (service_code)
        WHERE {where}
        ORDER BY o.opened_at DESC, o.enquiry_id DESC
        LIMIT %(limit)s
        """,
        {"ids": ids, "codes": service_codes, "statuses": statuses, "start": start, "end": end, "limit": limit},
    ).fetchall()


_WINDOW = """
    o.opened_at BETWEEN %(start)s AND %(end)s
    AND (%(codes)s::text[] IS NULL OR o.service_code = ANY (%(codes)s))
    AND (%(statuses)s::text[] IS NULL
         OR (CASE WHEN o.status = 'closed' THEN 'closed' ELSE 'open' END) = ANY (%(statuses)s))
"""


def get_request(conn: psycopg.Connection, enquiry_id: int) -> dict[str, Any] | None:
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {_REQUEST_COLUMNS}
        FROM open311_enquiries o LEFT JOIN open311_service_list l USING (service_code)
        WHERE o.enquiry_id = %s
        """,
        (enquiry_id,),
    ).fetchone()


def given_with(conn: psycopg.Connection, enquiry_id: int) -> dict[str, Any] | None:
    """What was given with an enquiry raised through Open311, the contact details nested as
    ``contact``; None for one raised otherwise. Personal data: for customer care's keys only."""
    row: dict[str, Any] | None = conn.execute(  # type: ignore[assignment]
        """
        SELECT r.service_code, s.service_name, r.description, r.lat, r.long, r.address_string, r.address_id,
               r.media_url, r.attributes AS attribute, r.first_name, r.last_name, r.email, r.phone, r.raised_by
        FROM open311_requests r JOIN open311_services s USING (service_code)
        WHERE r.enquiry_id = %s
        """,
        (enquiry_id,),
    ).fetchone()
    if row is None:
        return None
    row["contact"] = {name: row.pop(name) for name in ("first_name", "last_name", "email", "phone")}
    return row
