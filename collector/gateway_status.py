"""Gateways' own status, as they keep it on the broker (retained, /work/shared/architecture.md):
``{root}/{gateway_id}/status`` is ``online`` when the gateway connects and ``offline`` when it stops
or, as its last will, when the broker loses it; ``{root}/{gateway_id}/status/health`` is its health
(``gateway.service.Gateway.publish_status``). The collector keeps the newest of each per gateway in
``gateway_status``, so a gateway gone silent reaches the meters API (``GET /gateways``) instead of
nothing but the broker.

Of the health only a summary is kept: with thousands of meters the message is a megabyte, every
minute; the meters' own state is in ``events`` (their offline and online events) and readings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aquami.contracts.reads import is_identifier
from collector.batch_parser import RejectedMessage

LINK_STATES = {b"online": True, b"offline": False}
HEALTH_SUMMARY_MAX_BYTES = 64 * 1024  # a summary larger than this is no gateway's: refused


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """One status message: the link state (``online``) or a health summary (``health``)."""

    gateway_id: str
    received_at: datetime
    online: bool | None = None
    health: dict[str, Any] | None = None


def status_gateway(topic: str) -> tuple[str, str] | None:
    """(gateway id, "status" or "health") of a status topic, else None."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[-1] == "status":
        return parts[-2], "status"
    if len(parts) >= 4 and parts[-2:] == ["status", "health"]:
        return parts[-3], "health"
    return None


def parse_status_message(
    topic: str, payload: bytes | bytearray, received_at: datetime
) -> GatewayStatus | RejectedMessage:
    where = status_gateway(topic)
    if where is None:
        return RejectedMessage(f"not a status topic: {topic!r}")
    gateway_id, kind = where
    if not is_identifier(gateway_id):
        return RejectedMessage(f"the topic's gateway id {gateway_id!r} is not an identifier")
    if kind == "status":
        online = LINK_STATES.get(bytes(payload))
        if online is None:
            return RejectedMessage(f"a gateway's status is 'online' or 'offline', not {bytes(payload[:40])!r}")
        return GatewayStatus(gateway_id, received_at, online=online)
    try:
        health: Any = json.loads(payload)
    except ValueError as error:
        return RejectedMessage(f"not JSON: {error}")
    if not isinstance(health, dict) or health.get("gateway_id") != gateway_id:
        return RejectedMessage(f"a health status is an object with the topic's gateway_id {gateway_id!r}")
    meters = health.get("meters", {})
    if not isinstance(meters, dict) or not all(isinstance(m, dict) for m in meters.values()):
        return RejectedMessage("a health status's meters is an object of objects, one per meter")
    omitted = health.get("meters_omitted", 0)
    if not isinstance(omitted, int) or isinstance(omitted, bool) or omitted < 0:
        return RejectedMessage("a health status's meters_omitted is a count")
    summary = {key: value for key, value in health.items() if key not in ("meters", "meters_omitted")}
    summary["meters_total"] = len(meters) + omitted  # a large gateway's summary lists only failing meters
    summary["meters_offline"] = sum(1 for m in meters.values() if m.get("offline") is True)
    summary["meters_failing"] = sum(1 for m in meters.values() if m.get("consecutive_failures"))
    if len(json.dumps(summary)) > HEALTH_SUMMARY_MAX_BYTES:
        return RejectedMessage(f"a health summary over {HEALTH_SUMMARY_MAX_BYTES} bytes")
    return GatewayStatus(gateway_id, received_at, health=summary)
