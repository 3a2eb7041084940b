"""HTTP for billing: validated reads and determinants, as paged JSON or CSV (``Accept: text/csv``
or ``?format=csv``; CSV is the whole result in one response, since billing imports files whole).
NEM12 is streamed as it is written, after every error it could meet has been checked.
"""

from __future__ import annotations

from datetime import datetime
from itertools import chain
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from aquami.contracts.reads import utc_iso
from aquami.stored_times import shape_problem
from server.accept import preferred
from server.auth import Principal, require_role
from server.billing import repository, service
from server.billing.downloads import attachment
from server.billing.nem12 import PARTICIPANT_ID, ZoneNotExportable, nem12_chunks, prepare, standard_time
from server.billing.schemas import BillingRead, BillingReadPage, DeterminantPage, RemovedRead
from server.db import StreamingConnection, get_connection, get_streaming_connection
from server.exact_json import ExactJsonRoute
from server.instants import UtcInstant
from server.problem_docs import problems
from server.problems import Problem

router = APIRouter(prefix="/billing", tags=["billing"], route_class=ExactJsonRoute)
Billing = Annotated[Principal, Depends(require_role("billing"))]
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
Format = Annotated[Literal["json", "csv"] | None, Query(description="csv, or send Accept: text/csv")]
UNKNOWN = "Unknown account: no account of that id"
INVALID_PERIOD = "Invalid or empty period"
_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked for"}
}


#: What the reads and determinants are answered in, the default first.
_OFFERED = ("application/json", "text/csv")


def _wants_csv(request: Request, format_: str | None) -> bool:
    """``?format=`` decides; else ``Accept``, by q-value (server.accept.preferred): ``text/csv;q=0.1,
    application/json`` is JSON (it was CSV, the header merely naming text/csv); at equal q the type
    named exactly wins (``text/csv, */*`` is CSV), then JSON, the default (``text/csv,
    application/json``, either alike, is JSON)."""
    if format_ is not None:
        return format_ == "csv"
    return preferred(request.headers.get("accept"), _OFFERED) == "text/csv"


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(filename)},
    )


def _read_cursor(cursor: str | None) -> tuple[tuple[datetime, str] | None, datetime | None]:
    """The keyset position (ts, meter_id) and the pull's next_changed_since, from ``ts~meter~since``
    (``ts~meter`` from before the pull carried it). The meter is what lies between the first ``~``
    and the last: an id registered before ids were checked may hold ``~`` (a time cannot), and cut at
    its own ``~`` the page after it was a 400, the pull's later reads in no page."""
    if cursor is None:
        return None, None
    ts, sep, rest = cursor.partition("~")
    meter, carried, since = rest.rpartition("~")
    if not carried:
        meter, since = rest, ""
    moments = [_instant(ts), _instant(since) if since else None]
    if not sep or moments[0] is None or (since and moments[1] is None):
        raise Problem(400, f"invalid cursor {cursor!r}; use the 'next' URL as given", title="Invalid cursor")
    return (moments[0], meter), moments[1]


def _instant(text: str) -> datetime | None:
    if shape_problem(text) is not None:  # fromisoformat reads 12.5 as 12:00:00.5, any character as T
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _not_ahead_of_the_database(changed_since: datetime, clock: datetime) -> None:
    """A changed_since later than the database's clock is not a pull's next_changed_since (which is
    never ahead of it): a billing system's own clock, or a local time written as UTC. Answered, it
    gave nothing, and each read written before it came in no pull after, never billed."""
    if changed_since > clock:
        raise Problem(
            400,
            f"changed_since {utc_iso(changed_since)} is later than the database's clock ({utc_iso(clock)}): "
            "reads written before it would be in no pull; give the previous pull's next_changed_since "
            "(or no changed_since, for every read)",
            title="changed_since ahead of the database",
        )


@router.get(
    "/reads",
    response_model=BillingReadPage,
    responses={
        **_CSV_RESPONSE,
        **problems(
            {
                400: "Empty period, a cursor not from a 'next', or a changed_since later than the database's clock",
                404: UNKNOWN,
            }
        ),
    },
    summary="An account's validated reads in [from, to), with their quality",
)
def billing_reads(
    request: Request,
    _: Billing,
    conn: Connection,
    account: Annotated[str, Query(description="the billing account")],
    start: Annotated[UtcInstant, Query(alias="from", description="inclusive, with a UTC offset")],
    end: Annotated[UtcInstant, Query(alias="to", description="exclusive, with a UTC offset")],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(description="from the previous page's 'next'")] = None,
    changed_since: Annotated[
        UtcInstant | None,
        Query(
            description="only reads written or revised at or after it, or moved into the account by a job card "
            "or agreement recorded since, and the keys of those removed or moved out since: "
            "the previous pull's next_changed_since"
        ),
    ] = None,
    format: Format = None,
) -> BillingReadPage | Response:
    if end <= start:
        raise Problem(400, "'to' must be after 'from'", title="Empty period")
    if not repository.account_exists(conn, account):
        raise Problem(404, f"no account {account!r}", title="Unknown account")
    if changed_since is not None:
        _not_ahead_of_the_database(changed_since, repository.database_clock(conn))
    lag = request.app.state.floor_lag_warning  # a floor further behind names what holds it (changes_floor)
    if _wants_csv(request, format):
        csv_floor = repository.changes_floor(conn, lag)  # before the reads: see changes_floor
        rows = repository.account_reads(conn, account, start, end, None, None, changed_since)
        if changed_since is not None:
            rows = service.with_removed(
                rows, repository.account_removed(conn, account, start, end, changed_since, None)
            )
        text = service.to_csv(service.READ_COLUMNS, ([r[c] for c in service.READ_COLUMNS] for r in rows))
        response = _csv(text, f"reads-{account}-{service.period_label(start, end)}.csv")
        # as the JSON gives it (…Z): "+00:00" taken into a query string unencoded reads as a space
        response.headers["Aquami-Next-Changed-Since"] = utc_iso(csv_floor)
        return response
    after, carried = _read_cursor(cursor)
    floor = carried or repository.changes_floor(conn, lag)  # a pull's first page: before its reads (changes_floor)
    gone: list[dict[str, Any]] = []
    if changed_since is None:
        rows = repository.account_reads(conn, account, start, end, after, limit + 1)
    else:  # limit bounds a page's reads and removed keys together, in one order
        rows, gone = repository.changes_page(conn, account, start, end, changed_since, after, limit + 1)
    keys = [(row["ts"], row["meter_id"]) for row in rows]
    gone_keys = [(row["ts"], row["meter_id"]) for row in gone]
    if gone:
        n_items, n_gone, last = repository.first_keys(conn, keys, gone_keys, limit)
    else:
        n_items, n_gone, last = min(limit, len(rows)), 0, keys[min(limit, len(rows)) - 1] if rows else None
    items = [BillingRead(**row) for row in rows[:n_items]]
    removed = [RemovedRead(**row) for row in gone[:n_gone]]
    next_url = None
    if len(rows) + len(gone) > limit and last is not None:
        ts, meter_id = last
        next_url = str(request.url.include_query_params(cursor=f"{ts.isoformat()}~{meter_id}~{floor.isoformat()}"))
    return BillingReadPage(
        account_id=account,
        start=start,
        end=end,
        changed_since=changed_since,
        items=items,
        removed=removed,
        next_changed_since=floor,
        next=next_url,
    )


@router.get(
    "/determinants",
    response_model=DeterminantPage,
    responses={**_CSV_RESPONSE, **problems({400: INVALID_PERIOD, 404: UNKNOWN})},
    summary="Consumption per account for a billing period, with opening and closing reads",
)
def billing_determinants(
    request: Request,
    _: Billing,
    conn: Connection,
    period: Annotated[
        str, Query(description="YYYY-MM (a month of the utility's calendar) or START/END (ISO 8601, end exclusive)")
    ],
    account: Annotated[str | None, Query(description="one account only")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="accounts per page")] = 500,
    cursor: Annotated[str | None, Query(description="the last account of the previous page")] = None,
    format: Format = None,
) -> DeterminantPage | Response:
    zone = repository.utility_timezone(conn)
    start, end = service.parse_period(period, zone)
    if account is not None and not repository.account_exists(conn, account):
        raise Problem(404, f"no account {account!r}", title="Unknown account")
    if _wants_csv(request, format):
        items = service.determinants(repository.determinant_lines(conn, start, end, account, None, None))
        text = service.to_csv(service.DETERMINANT_COLUMNS, service.determinant_csv_rows(items, start, end))
        return _csv(text, f"determinants-{service.period_label(start, end, zone)}.csv")
    items = service.determinants(repository.determinant_lines(conn, start, end, account, cursor, limit + 1))
    next_url = None
    if len(items) > limit:
        items = items[:limit]
        next_url = str(request.url.include_query_params(cursor=items[-1].account_id))
    return DeterminantPage(start=start, end=end, items=items, next=next_url)


@router.get(
    "/nem12",
    responses={
        200: {"content": {"text/csv": {}}, "description": "a NEM12 file"},
        **problems(
            {
                400: INVALID_PERIOD,
                404: UNKNOWN,
                409: "The utility's time zone, or a participant, service point or meter id, cannot be written in NEM12",
            }
        ),
    },
    summary="Hourly interval data in the AEMO NEM12 layout, for MDM-style integrations",
)
def billing_nem12(
    request: Request,
    _: Billing,
    streaming: Annotated[StreamingConnection, Depends(get_streaming_connection)],
    period: Annotated[str, Query(description="YYYY-MM or START/END: whole days of the utility's standard time")],
    account: Annotated[str | None, Query(description="one account's meters only")] = None,
    sender: Annotated[str, Query(pattern=PARTICIPANT_ID, description="100 record: from participant")] = "AQUAMI",
    receiver: Annotated[str, Query(pattern=PARTICIPANT_ID, description="100 record: to participant")] = "BILLING",
) -> StreamingResponse:
    conn = streaming.conn  # the request's: the file is read on it (one connection a download)
    zone = repository.utility_timezone(conn)
    standard = standard_time(zone)
    start, end = service.parse_period(period, standard)
    if account is not None and not repository.account_exists(conn, account):
        raise Problem(404, f"no account {account!r}", title="Unknown account")
    try:  # every error the file can meet, found before its first byte is sent
        export = prepare(conn, start, end, zone=zone, account=account, sender=sender, receiver=receiver)
    except OverflowError:  # the period's whole days of standard time run past the calendar
        raise Problem(400, f"{period!r}: its last whole day ends after the year 9999", title="Invalid period") from None
    except ZoneNotExportable as error:  # the utility's zone, not the request: a conflict with the setting
        raise Problem(409, str(error), title="No NEM12 in this time zone") from None
    except ValueError as error:  # an id registered before ids were checked, that NEM12 cannot carry
        raise Problem(409, str(error), title="Not writable in NEM12") from None
    chunks = streaming.stream(nem12_chunks(conn, export))
    # Its first chunk taken here, which declares the file's cursor: the database gone since the checks
    # is a 503 (server.problems: a connection lost), not a 200 cut short.
    first = next(chunks)
    return StreamingResponse(
        chain([first], chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(f"nem12-{service.period_label(start, end, standard)}.csv")},
    )
