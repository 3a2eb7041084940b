"""HTTP for meters and readings; rules and SQL live in the repository."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from starlette.convertors import register_url_convertor

from aquami.contracts.reads import utc_iso
from collector.vee.editing import (
    FasterThanTheMeter,
    NoSuchReading,
    OutOfSequence,
    edit_reading,
    reading_history,
    substitute_reading,
)
from collector.vee.register_order import Neighbour
from server.auth import Principal, require_role
from server.db import get_connection
from server.exact_json import ExactJsonRoute
from server.instants import ReadingInstant, UtcInstant
from server.meters import repository
from server.meters.paths import MeterIdConvertor
from server.meters.schemas import (
    Meter,
    MeterPage,
    Reading,
    ReadingCorrection,
    ReadingPage,
    ReadingSubstitution,
    ReadingVersion,
    meter_from_row,
)
from server.problem_docs import problems
from server.problems import Problem

# The routes' "{meter_id:meter_id}" takes "/" too (server.meters.paths). A GET goes to the first route
# matching its path, and "/{meter_id:meter_id}" alone matches "/A/readings" as well: it comes last.
register_url_convertor("meter_id", MeterIdConvertor())
router = APIRouter(prefix="/meters", tags=["meters"], route_class=ExactJsonRoute)
Readers = Annotated[Principal, Depends(require_role("reader", "meterization", "customer_care"))]
Editors = Annotated[Principal, Depends(require_role("meterization", "billing"))]
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
UNKNOWN_METER = "Unknown meter: no meter of that id"
UNKNOWN_READING = "Unknown reading: no reading of that meter at that time"
OUT_OF_SEQUENCE = (
    "Register out of sequence: the value is below the meter's measured reading before it or above the one "
    "after it (named in before and after); or, with no reading after it, further above the one before than "
    "the meter passes at its maximum flow (Register faster than the meter: flow_m3h against max_flow_m3h); "
    'send it with "out_of_sequence": "confirmed" if it is meant'
)


def _next_url(request: Request, cursor: str) -> str:
    return str(request.url.include_query_params(cursor=cursor))


@router.get("", response_model=MeterPage, summary="Meters with their latest reading, by meter id")
def list_meters(
    request: Request,
    _: Readers,
    conn: Connection,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="meter id to continue after")] = None,
    not_read_since: Annotated[
        UtcInstant | None,
        Query(description="only meters with no reading at or after this instant (the ones not communicating)"),
    ] = None,
) -> MeterPage:
    rows = repository.list_meters(conn, cursor, limit + 1, not_read_since)
    items = [meter_from_row(row) for row in rows[:limit]]
    return MeterPage(items=items, next=_next_url(request, items[-1].meter_id) if len(rows) > limit else None)


@router.get(
    "/{meter_id:meter_id}/readings",
    response_model=ReadingPage,
    responses=problems({400: "Empty period: 'to' not after 'from'", 404: UNKNOWN_METER}),
    summary="A meter's readings in [from, to)",
)
def list_readings(
    request: Request,
    meter_id: str,
    _: Readers,
    conn: Connection,
    start: Annotated[UtcInstant | None, Query(alias="from", description="inclusive, with a UTC offset")] = None,
    end: Annotated[UtcInstant | None, Query(alias="to", description="exclusive, with a UTC offset")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[UtcInstant | None, Query(description="ts of the last reading of the previous page")] = None,
) -> ReadingPage:
    if start is not None and end is not None and end <= start:
        raise Problem(400, "'to' must be after 'from'", title="Empty period")
    if not repository.meter_exists(conn, meter_id):
        raise Problem(404, f"no meter {meter_id!r}", title="Unknown meter")
    rows = repository.list_readings(conn, meter_id, start, end, cursor, limit + 1)
    items = [Reading(**row) for row in rows[:limit]]
    next_url = None
    if len(rows) > limit:
        last: datetime = items[-1].ts
        next_url = _next_url(request, last.isoformat())
    return ReadingPage(meter_id=meter_id, items=items, next=next_url)


def _neighbour(read: Neighbour | None) -> dict[str, str] | None:
    return None if read is None else {"ts": utc_iso(read.ts), "volume_m3": str(read.volume_m3), "quality": read.quality}


def _out_of_sequence(error: OutOfSequence) -> Problem:
    """409: the person's value against the stored reads it is out of order with, named in
    ``before`` and ``after`` (exact volumes as strings, as readings are answered); a newest read
    faster than the meter also gives the flow it implies and the meter's maximum (m³/h)."""
    flow: dict[str, Any] = {}
    if isinstance(error, FasterThanTheMeter):  # what the value implies, against what the meter passes
        flow = {"flow_m3h": round(error.flow_m3h, 3), "max_flow_m3h": error.max_flow.m3h}
    return Problem(
        409, str(error), title=error.title, before=_neighbour(error.before), after=_neighbour(error.after), **flow
    )


def _stored_reading(conn: psycopg.Connection, meter_id: str, ts: datetime) -> Reading:
    row = repository.get_reading(conn, meter_id, ts)
    if row is None:
        raise Problem(404, f"no reading of {meter_id!r} at {utc_iso(ts)}", title="Unknown reading")
    return Reading(**row)


@router.put(
    "/{meter_id:meter_id}/readings/{ts}",
    response_model=Reading,
    responses=problems({404: UNKNOWN_READING, 409: OUT_OF_SEQUENCE}),
    summary="Correct a stored reading, with the reason",
)
def correct_reading(
    meter_id: str, ts: ReadingInstant, body: ReadingCorrection, principal: Editors, conn: Connection
) -> Reading:
    """The reading becomes ``edited``; the version it replaces is kept with who, when and why."""
    try:
        with conn.transaction():
            edit_reading(
                conn,
                meter_id,
                ts,
                body.volume_m3,
                by=principal.name,
                by_key_id=principal.key_id,
                reason=body.reason,
                out_of_sequence_confirmed=body.out_of_sequence == "confirmed",
            )
    except NoSuchReading as error:
        raise Problem(404, str(error), title="Unknown reading") from error
    except OutOfSequence as error:
        raise _out_of_sequence(error) from error
    return _stored_reading(conn, meter_id, ts)


@router.post(
    "/{meter_id:meter_id}/readings",
    response_model=Reading,
    status_code=201,
    responses=problems(
        {
            404: UNKNOWN_METER,
            409: f"A reading is already stored at that time, and not an estimate. {OUT_OF_SEQUENCE}",
        }
    ),
    summary="Supply a missing reading",
)
def supply_reading(meter_id: str, body: ReadingSubstitution, principal: Editors, conn: Connection) -> Reading:
    """A ``substituted`` reading: fills a gap or replaces an estimate, never an actual reading."""
    if not repository.meter_exists(conn, meter_id):
        raise Problem(404, f"no meter {meter_id!r}", title="Unknown meter")
    try:
        with conn.transaction():
            substitute_reading(
                conn,
                meter_id,
                body.ts,
                body.volume_m3,
                by=principal.name,
                by_key_id=principal.key_id,
                reason=body.reason,
                out_of_sequence_confirmed=body.out_of_sequence == "confirmed",
            )
    except OutOfSequence as error:
        raise _out_of_sequence(error) from error
    except ValueError as error:
        raise Problem(409, str(error), title="A reading is already stored") from error
    return _stored_reading(conn, meter_id, body.ts)


@router.get(
    "/{meter_id:meter_id}/readings/{ts}/history",
    response_model=list[ReadingVersion],
    responses=problems({404: UNKNOWN_READING}),
    summary="Earlier versions of a reading",
)
def reading_versions(meter_id: str, ts: UtcInstant, _: Readers, conn: Connection) -> list[ReadingVersion]:
    current = repository.get_reading(conn, meter_id, ts)
    versions = reading_history(conn, meter_id, ts)
    if current is None and not versions:
        raise Problem(404, f"no reading of {meter_id!r} at {utc_iso(ts)}", title="Unknown reading")
    return [ReadingVersion(**version) for version in versions]


@router.get(
    "/{meter_id:meter_id}",
    response_model=Meter,
    responses=problems({404: UNKNOWN_METER}),
    summary="One meter with its latest reading",
)
def get_meter(meter_id: str, _: Readers, conn: Connection) -> Meter:
    row = repository.get_meter(conn, meter_id)
    if row is None:
        raise Problem(404, f"no meter {meter_id!r}", title="Unknown meter")
    return meter_from_row(row)
