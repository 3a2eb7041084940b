"""HTTP for the gateways' status (collector.gateway_status keeps it): which are online, since when,
and how their meters and spool were at their last health report."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from server.auth import Principal, require_role
from server.db import get_connection
from server.exact_json import ExactJsonRoute
from server.instants import UtcInstant

router = APIRouter(prefix="/gateways", tags=["gateways"], route_class=ExactJsonRoute)
Readers = Annotated[Principal, Depends(require_role("reader", "meterization", "customer_care"))]
Connection = Annotated[psycopg.Connection, Depends(get_connection)]


class Gateway(BaseModel):
    gateway_id: str
    online: bool | None = Field(description="its link to the broker: false once it stopped or the broker lost it")
    link_since: UtcInstant | None = Field(description="when the collector first heard the current link state")
    health: dict[str, Any] | None = Field(
        description="its last health report, the meters summed up: meters_total, meters_offline, meters_failing"
    )
    health_at: UtcInstant | None = Field(description="when the collector received that report")


@router.get("", response_model=list[Gateway], summary="Gateways, offline ones first")
def list_gateways(_: Readers, conn: Connection) -> list[Gateway]:
    rows = conn.execute(
        """
        SELECT g.gateway_id, g.online, g.link_since, g.health, g.health_at
        FROM gateway_status g
        ORDER BY g.online IS TRUE, g.gateway_id
        """
    ).fetchall()
    return [Gateway(**row) for row in rows]  # type: ignore[arg-type]
