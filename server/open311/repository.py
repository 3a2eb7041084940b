"""All SQL of the Open311 facade (server migration 0043): services, and enquiries as requests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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


#: How long a request the same key sends again, identical, is taken for a retry of the first (answered
#: with its enquiry): a retry after a lost answer comes within seconds or minutes; the same report
#: made again later ("still leaking") is a new one for customer care.
SAME_REQUEST_WINDOW = timedelta(minutes=10)
#: How long an Idempotency-Key is kept (as Stripe keeps its keys): an app that queues a report while
#: offline and sends it again later is still answered with the first's enquiry.
IDEMPOTENCY_KEY_KEPT = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Raised:
    enquiry_id: int
    service_notice: str


class IdempotencyKeyReused(Exception):
    """The key's Idempotency-Key was given, within the time it is kept, with another request."""

    def __init__(self, enquiry_id: int, received_at: datetime) -> None:
        super().__init__(enquiry_id, received_at)
        self.enquiry_id = enquiry_id
        self.received_at = received_at


#: GeoReport v2's fields that tell who sent a request and that aquami does not keep: the device the
#: report came from, and the person's account with the app. Not stored, but part of what makes a
#: request the same one again (:func:`fingerprint`).
SENDER_FIELDS = ("device_id", "account_id")


def fingerprint(request: RequestIn, sender: Mapping[str, Any] | None = None) -> bytes:
    """The SHA-256 of the request as checked: its fields and attributes, whether posted as a form or
    as JSON (``lat=51.5`` and ``"lat": 51.5`` are one request), and the :data:`SENDER_FIELDS` given
    (``sender``: the body's fields). Before, those were left out, so two customers of one app
    sending the very same words from the same place within 10 minutes were one enquiry even when
    the app said they came from two devices. Left out when not given: the hash of a request without
    them is what it was, so a retry across an upgrade is still recognised."""
    checked: dict[str, Any] = request.model_dump(mode="json")
    for name in SENDER_FIELDS:
        value = (sender or {}).get(name)
        if value is not None:  # a form's text and JSON's number of one id are one id
            checked[f"sender:{name}"] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = json.dumps(checked, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def raise_request(
    conn: psycopg.Connection,
    request: RequestIn,
    service: dict[str, Any],
    *,
    source: str,
    by: str,
    by_key_id: str,
    idempotency_key: str | None = None,
    sender: Mapping[str, Any] | None = None,
) -> Raised:
    """The enquiry, what was given with it and its first update (under ``by`` and ``by_key_id``: the
    name and the id of the key that raised it), in one transaction; or, for a retry, the enquiry the
    first try raised (:func:`_claim`). The account and meter references given are linked when they
    name an account or a meter; kept as given, and said on the update (without quoting it), when
    they do not. The enquiry's subject and first update hold none of the person's words: readers see
    those, and the words are personal data (care keys see them in ``given_with``).
    ``sender``: the body's fields, whose :data:`SENDER_FIELDS` tell a retry from another person's report.
    IdempotencyKeyReused when ``idempotency_key`` came with another request."""
    account = request.attribute.get("account")
    meter = request.attribute.get("meter")
    with conn.transaction():
        post_id, earlier = _claim(conn, by_key_id, idempotency_key, fingerprint(request, sender))
        if earlier is not None:
            return Raised(earlier, service["service_notice"])  # a retry: nothing stored now
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
        conn.execute("UPDATE open311_posts SET enquiry_id = %s WHERE post_id = %s", (enquiry_id, post_id))
    return Raised(enquiry_id, service["service_notice"])


def _claim(
    conn: psycopg.Connection, key_id: str, idempotency_key: str | None, digest: bytes
) -> tuple[int | None, int | None]:
    """The POST's row in open311_posts (server migration 0062), and None; or, when the key sent this
    Idempotency-Key, or else this very request, within the time it is kept, None and the enquiry
    that POST raised. Never a look before inserting: a retry arriving while the first try's transaction
    is open waits on the unique index for it to end, then finds its row."""
    if idempotency_key is not None:
        arbiter, kept = "(key_id, idempotency_key) WHERE idempotency_key IS NOT NULL", IDEMPOTENCY_KEY_KEPT
        same = "idempotency_key = %(idempotency_key)s"
    else:
        arbiter, kept = "(key_id, fingerprint) WHERE idempotency_key IS NULL", SAME_REQUEST_WINDOW
        same = "idempotency_key IS NULL AND fingerprint = %(fingerprint)s"
    given = {"key_id": key_id, "idempotency_key": idempotency_key, "fingerprint": digest, "kept": kept}
    # Rows past the longest window serve no claim: deleted, not kept (a hash of a person's words and
    # contact details). The first POST after they age deletes them; the next finds none to wait on.
    conn.execute("DELETE FROM open311_posts WHERE received_at < now() - %s", (IDEMPOTENCY_KEY_KEPT,))
    claimed = conn.execute(
        f"""
        INSERT INTO open311_posts AS p (key_id, idempotency_key, fingerprint)
        VALUES (%(key_id)s, %(idempotency_key)s, %(fingerprint)s)
        ON CONFLICT {arbiter} DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, enquiry_id = NULL, received_at = EXCLUDED.received_at
            WHERE p.received_at < now() - %(kept)s
        RETURNING post_id
        """,
        given,
    ).fetchone()
    if claimed is not None:
        return int(claimed["post_id"]), None  # type: ignore[call-overload]
    earlier: dict[str, Any] | None = conn.execute(  # type: ignore[assignment]
        f"SELECT enquiry_id, fingerprint, received_at FROM open311_posts WHERE key_id = %(key_id)s AND {same}",
        given,
    ).fetchone()
    assert earlier is not None and earlier["enquiry_id"] is not None  # committed with its enquiry
    if bytes(earlier["fingerprint"]) != digest:
        raise IdempotencyKeyReused(int(earlier["enquiry_id"]), earlier["received_at"])
    return None, int(earlier["enquiry_id"])


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
    raised_by: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first. ``ids``, when given, are the whole query (GeoReport v2: "This overrides all
    other arguments"); otherwise enquiries opened in ``[start, end]`` of the codes and open/closed
    statuses given (all when None). With ``raised_by``, only those :func:`_raised_by` keeps."""
    where = "o.enquiry_id = ANY (%(ids)s)" if ids is not None else _WINDOW
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {_REQUEST_COLUMNS}
        FROM open311_enquiries o LEFT JOIN open311_service_list l USING (service_code)
        WHERE {where} AND {_raised_by(raised_by)}
        ORDER BY o.opened_at DESC, o.enquiry_id DESC
        LIMIT %(limit)s
        """,
        {
            "ids": ids,
            "codes": service_codes,
            "statuses": statuses,
            "start": start,
            "end": end,
            "limit": limit,
            "raised_by": raised_by,
        },
    ).fetchall()


def _raised_by(raised_by: str | None) -> str:
    """With a key's name as ``raised_by``, the condition keeping the requests a customers' app raised
    under that name: through Open311, as the customer (a care agent's key of the same name raises as
    staff, and its requests are not the app's). By name, not by key id: an app's rotated key carries
    the old one's name, and still reads the requests its customers raised before. Asked as a set, in
    a query of its own: an app's requests are few among the enquiries, and asked row by row (or
    beside ``%(raised_by)s IS NULL``, which keeps the planner from the set) its newest 1,000 took
    55-114 ms among 150,000 enquiries, 21-24 ms as a set, where customer care's took 11-19 ms
    (python -m benchmarks.bench_open311_requests, a loaded machine)."""
    if raised_by is None:
        return "true"
    return """o.enquiry_id IN (
        SELECT r.enquiry_id FROM open311_requests r JOIN enquiries e USING (enquiry_id)
        WHERE r.raised_by = %(raised_by)s AND e.source = 'customer')"""


_WINDOW = """
    o.opened_at BETWEEN %(start)s AND %(end)s
    AND (%(codes)s::text[] IS NULL OR o.service_code = ANY (%(codes)s))
    AND (%(statuses)s::text[] IS NULL
         OR (CASE WHEN o.status = 'closed' THEN 'closed' ELSE 'open' END) = ANY (%(statuses)s))
"""


def get_request(conn: psycopg.Connection, enquiry_id: int, *, raised_by: str | None = None) -> dict[str, Any] | None:
    """The request of that id; with ``raised_by``, only one :func:`_raised_by` keeps (None for another)."""
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {_REQUEST_COLUMNS}
        FROM open311_enquiries o LEFT JOIN open311_service_list l USING (service_code)
        WHERE o.enquiry_id = %(enquiry_id)s AND {_raised_by(raised_by)}
        """,
        {"enquiry_id": enquiry_id, "raised_by": raised_by},
    ).fetchone()


def unknown_service_codes(conn: psycopg.Connection, codes: list[str]) -> list[str]:
    """Those of ``codes`` no service has, in their order: neither listed (services.json) nor a
    detection category some enquiry is filed under (a rule removed since, whose enquiries keep
    their code). Enquiries are searched only for a ``detected_`` code the list lacks."""
    rows = conn.execute(
        """
        SELECT c.code FROM unnest(%s::text[]) WITH ORDINALITY AS c (code, n)
        WHERE NOT EXISTS (SELECT FROM open311_service_list l WHERE l.service_code = c.code)
          AND NOT (c.code LIKE 'detected\\_%%'
                   AND EXISTS (SELECT FROM enquiries e WHERE open311_detected_code(e.category) = c.code))
        ORDER BY c.n
        """,
        (codes,),
    ).fetchall()
    return [row["code"] for row in rows]  # type: ignore[call-overload]


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
