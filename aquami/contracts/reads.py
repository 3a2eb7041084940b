"""The ``reads`` MQTT message: one gateway batch of readings, and its JSON Schema.

Both the gateway (which builds it) and the collector (which validates it) use this module, so the
schema file beside it is the single definition of the contract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from jsonschema.protocols import Validator

from aquami.contracts.schema_files import ContractValidator, breaches, load_schema

ALARMS = ("leak", "burst", "tamper", "reverse_flow", "dry", "low_battery", "meter_error")
Protocol = Literal["modbus-tcp", "modbus-rtu", "mbus", "wmbus", "pulse"]
TOPIC_ROOT = "aquami/v1"
#: The schema's bounds on a reading's numbers, for code that checks them before or beside it (the
#: gateway leaves an optional value out rather than spoil its batch; ``aquami detect`` refuses a
#: register that is none; the collector's fast decoder). A test holds them equal to the schema's.
VOLUME_MAX_M3 = 1e12  # volume_m3 and reverse_volume_m3: 0 to this
FLOW_MAX_M3H = 1e6  # flow_m3h: minus this to this
#: A meter's, a bus's or a gateway's name ($defs/identifier of both schemas): what the gateway's
#: configuration, the collector's fast decoder and meterization's register-meters accept.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*\Z"
IDENTIFIER_MAX_LENGTH = 64
_identifier_match = re.compile(IDENTIFIER_PATTERN).match


def is_identifier(text: str) -> bool:
    return len(text) <= IDENTIFIER_MAX_LENGTH and _identifier_match(text) is not None


def reads_topic(gateway_id: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{gateway_id}/reads"


def status_topic(gateway_id: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{gateway_id}/status"


def events_topic(gateway_id: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{gateway_id}/events"


def utc_iso(moment: datetime) -> str:
    """ISO 8601 with a trailing Z; refuses naive datetimes, which are never UTC by accident here."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: aquami times are timezone-aware UTC")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter reading as the MQTT contract defines it."""

    meter_id: str
    ts: datetime
    volume_m3: float
    flow_m3h: float | None = None
    reverse_volume_m3: float | None = None
    alarms: tuple[str, ...] = ()
    protocol: Protocol = "modbus-tcp"
    bus: str | None = None
    address: str | int | None = None

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"meter_id": self.meter_id, "ts": utc_iso(self.ts), "volume_m3": self.volume_m3}
        if self.flow_m3h is not None:
            payload["flow_m3h"] = self.flow_m3h
        if self.reverse_volume_m3 is not None:
            payload["reverse_volume_m3"] = self.reverse_volume_m3
        if self.alarms:
            payload["alarms"] = list(self.alarms)
        source: dict[str, Any] = {"protocol": self.protocol}
        if self.bus is not None:
            source["bus"] = self.bus
        if self.address is not None:
            source["address"] = self.address
        payload["source"] = source
        return payload


@dataclass(frozen=True, slots=True)
class ReadsBatch:
    gateway_id: str
    batch_seq: int
    sent_at: datetime
    readings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway_id": self.gateway_id,
            "batch_seq": self.batch_seq,
            "sent_at": utc_iso(self.sent_at),
            "readings": self.readings,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


@cache
def reads_schema() -> dict[str, Any]:
    return load_schema("reads.schema.json")


@cache
def reads_validator() -> Validator:
    return ContractValidator(reads_schema())


def schema_errors(message: Any) -> list[str]:
    """Every way ``message`` breaks the contract, as ``path: reason`` lines (empty when valid)."""
    return breaches(reads_validator(), message)
