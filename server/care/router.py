"""HTTP for customer care's enquiries. Detection raises them by itself (server migration 0030)."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH
from server.auth import Principal, may, require_role
from server.care import repository
from server.care.schemas import (
    CATEGORY_MAX_LENGTH,
    Enquiry,
    EnquiryChange,
    EnquiryPage,
    EnquiryPriority,
    EnquirySource,
    EnquiryStatus,
    EnquiryWithUpdates,
)
from server.care.workflow import TransitionRefused
from server.db import get_connection
from server.exact_json import ExactJsonRoute
from server.open311 import repository as open311_repository
from server.problem_docs import problems
from server.problems import Problem

router = APIRouter(prefix="/enquiries", tags=["customer care"], route_class=ExactJsonRoute)
#: Who reads enquiries, and who works them (``admin`` too, as everywhere): the web page's enquiry
#: page (server.web.enquiries) holds keys to the same roles.
READS_ENQUIRIES = ("customer_care", "meterization", "reader")
WORKS_ENQUIRIES = ("customer_care",)
#: Who sees the personal data an enquiry was raised with (an Open311 request's contact details):
#: those who call the person back. Reader and meterization keys read enquiries without it.
SEES_CONTACTS = WORKS_ENQUIRIES
CareReaders = Annotated[Principal, Depends(require_role(*READS_ENQUIRIES))]
CustomerCare = Annotated[Principal, Depends(require_role(*WORKS_ENQUIRIES))]
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
UNKNOWN = "Unknown enquiry: no enquiry of that id"


@router.get("", response_model=EnquiryPage, summary="Enquiries, newest first")
def list_enquiries(
    request: Request,
    _: CareReaders,
    conn: Connection,
    status: Annotated[EnquiryStatus | None, Query()] = None,
    priority: Annotated[EnquiryPriority | None, Query(description="as the care desk's filter")] = None,
    source: Annotated[EnquirySource | None, Query()] = None,
    category: Annotated[str | None, Query(max_length=CATEGORY_MAX_LENGTH)] = None,
    account: Annotated[str | None, Query(max_length=IDENTIFIER_MAX_LENGTH)] = None,  # as register-accounts takes
    dma: Annotated[str | None, Query(description="the district the enquiries are in")] = None,  # any length
    meter_id: Annotated[str | None, Query(description="the meter the enquiries name")] = None,  # any length, as alerts'
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="from the previous page's 'next'")] = None,
) -> EnquiryPage:
    rows = repository.list_enquiries(
        conn,
        status=status,
        priority=priority,
        source=source,
        category=category,
        account_id=account,
        dma=dma,
        meter_id=meter_id,
        before=cursor,
        limit=limit + 1,
    )
    items = [Enquiry(**row) for row in rows[:limit]]
    next_url = str(request.url.include_query_params(cursor=items[-1].enquiry_id)) if len(rows) > limit else None
    return EnquiryPage(items=items, next=next_url)


def with_updates(conn: psycopg.Connection, row: dict[str, Any], principal: Principal) -> EnquiryWithUpdates:
    """The enquiry as ``principal`` may see it: what it was raised with through Open311 (``open311``,
    null when it was not) for a key that sees contacts; the field left unset, so left out of the
    answer (``response_model_exclude_unset``), for any other."""
    if may(principal, *SEES_CONTACTS):
        row = {**row, "open311": open311_repository.given_with(conn, row["enquiry_id"])}
    return EnquiryWithUpdates(**row)


@router.get(
    "/{enquiry_id}",
    response_model=EnquiryWithUpdates,
    response_model_exclude_unset=True,
    responses=problems({404: UNKNOWN}),
    summary="One enquiry with its updates (and, for customer care, what it was raised with through Open311)",
)
def get_enquiry(enquiry_id: int, principal: CareReaders, conn: Connection) -> EnquiryWithUpdates:
    row = repository.get_enquiry(conn, enquiry_id)
    if row is None:
        raise Problem(404, f"no enquiry {enquiry_id}", title="Unknown enquiry")
    return with_updates(conn, row, principal)


@router.post(
    "/{enquiry_id}/updates",
    response_model=EnquiryWithUpdates,
    response_model_exclude_unset=True,
    responses=problems(
        {
            404: UNKNOWN,
            409: "The workflow does not allow that status (or the priority or category is that already), or the "
            "enquiry changed since the version given",
            422: "Unknown category: none of the care desk's",
        }
    ),
    summary="Work an enquiry: a new status, priority or category and/or a note, recorded with who and when",
)
def change_enquiry(
    enquiry_id: int, body: EnquiryChange, principal: CustomerCare, conn: Connection
) -> EnquiryWithUpdates:
    try:
        row = repository.change_enquiry(
            conn, enquiry_id, by=principal.name, by_key_id=principal.key_id, status=body.status, note=body.note,
            shown_updated_at=body.expected_updated_at, priority=body.priority, category=body.category,
        )  # fmt: skip
    except TransitionRefused as error:
        raise Problem(409, str(error), title="Enquiry cannot change so") from error
    except repository.ChangedSince as error:
        raise Problem(409, f"{error}; nothing was saved", title="Enquiry changed since") from error
    except repository.UnknownCategory as error:
        raise Problem(422, str(error), title="Unknown category") from error
    if row is None:
        raise Problem(404, f"no enquiry {enquiry_id}", title="Unknown enquiry")
    return with_updates(conn, row, principal)
