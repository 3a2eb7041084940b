"""HTTP for alerts; their SQL and lifecycle rules live with the collector that raises them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from collector import alert_store
from collector.detection.alerts import AlertStatus
from server.alerts.dismissal import DISMISSES_ALERTS, Dismissal, dismiss_as
from server.auth import Principal, require_role
from server.db import get_connection
from server.exact_json import ExactJsonRoute
from server.problem_docs import problems
from server.problems import Problem

router = APIRouter(prefix="/alerts", tags=["alerts"], route_class=ExactJsonRoute)
Readers = Annotated[Principal, Depends(require_role("reader", "meterization", "customer_care", "billing"))]
CustomerCare = Annotated[Principal, Depends(require_role(*DISMISSES_ALERTS))]
Connection = Annotated[psycopg.Connection, Depends(get_connection)]
Kind = Literal["leak", "burst", "reverse_flow", "stuck", "dma_burst", "tamper", "dry", "low_battery", "meter_error"]


class AlertPage(BaseModel):
    items: list[dict[str, Any]]
    next: str | None


@router.get(
    "",
    response_model=AlertPage,
    responses=problems({400: "Bad cursor: no alert of that id"}),
    summary="Alerts, newest first",
)
def list_alerts(
    request: Request,
    _: Readers,
    conn: Connection,
    status: Annotated[Literal["open", "ongoing", "resolved", "dismissed"] | None, Query()] = None,
    kind: Annotated[Kind | None, Query()] = None,
    meter_id: Annotated[str | None, Query()] = None,  # any length: meters holds ids longer than the contract's
    dma: Annotated[str | None, Query(description="the district the alerts are in")] = None,  # any length, as meters'
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="alert_id to continue after")] = None,
) -> AlertPage:
    if cursor is not None and not alert_store.alert_exists(conn, cursor):
        # a page continues after an alert this list gave; an unknown one would read as "no more"
        raise Problem(400, f"cursor {cursor!r} is no alert: take the cursor from a page's 'next'", title="Bad cursor")
    found = alert_store.list_alerts(
        conn, status=status, kind=kind, meter_id=meter_id, dma=dma, after=cursor, limit=limit + 1
    )
    items = [a.to_json() for a in found[:limit]]
    next_url = str(request.url.include_query_params(cursor=items[-1]["alert_id"])) if len(found) > limit else None
    return AlertPage(items=items, next=next_url)


@router.post(
    "/{alert_id:path}/dismiss",
    responses=problems({404: "Unknown alert: no alert of that id", 409: "The alert is dismissed already"}),
    summary="Close an alert as needing no action, with the reason",
)
def dismiss(alert_id: str, body: Dismissal, principal: CustomerCare, conn: Connection) -> dict[str, Any]:
    try:
        alert = dismiss_as(conn, principal, alert_id, body.reason)
    except ValueError as error:
        raise Problem(409, str(error), title="Alert cannot be dismissed") from error
    if alert is None:
        raise Problem(404, f"no alert {alert_id!r}", title="Unknown alert")
    assert alert.status is AlertStatus.DISMISSED
    return alert.to_json()
