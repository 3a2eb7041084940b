"""The ``reads`` contract as msgspec types: decode and validate a message in one pass, in C.

This is the collector's fast path; ``aquami/contracts/reads.schema.json`` stays the contract. These
types say the same thing (tests/collector/test_ingest_fast_path.py checks both agree on generated
messages), with two deliberate strictnesses: patterns end with ``\\Z`` (the schema's ``$`` also
admits a trailing newline), and JSON's non-standard ``NaN``/``Infinity`` are not numbers. Anything
this path refuses goes through the JSON Schema validator, which says why.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Identifier = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*\Z")]
UtcTimestamp = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)\Z")]
Alarm = Literal["leak", "burst", "tamper", "reverse_flow", "dry", "low_battery", "meter_error"]
Protocol = Literal["modbus-tcp", "modbus-rtu", "mbus", "wmbus", "pulse"]


class Source(Struct, forbid_unknown_fields=True):
    protocol: Protocol
    bus: Annotated[str, Meta(max_length=128)] | UnsetType = UNSET
    address: str | int | UnsetType = UNSET


class Reading(Struct, forbid_unknown_fields=True):
    meter_id: Identifier
    ts: UtcTimestamp
    volume_m3: Annotated[float, Meta(ge=0, le=1e12)]
    flow_m3h: Annotated[float, Meta(ge=-1e6, le=1e6)] | UnsetType = UNSET
    reverse_volume_m3: Annotated[float, Meta(ge=0, le=1e12)] | UnsetType = UNSET
    alarms: list[Alarm] | UnsetType = UNSET
    source: Source | UnsetType = UNSET


class ReadsMessage(Struct, forbid_unknown_fields=True):
    gateway_id: Identifier
    batch_seq: Annotated[int, Meta(ge=0)]
    sent_at: UtcTimestamp
    readings: Annotated[list[Reading], Meta(min_length=1, max_length=10_000)]


_decoder = msgspec.json.Decoder(ReadsMessage)


def decode_reads(payload: bytes | bytearray) -> ReadsMessage | str:
    """The message, or msgspec's reason for refusing it."""
    try:
        message = _decoder.decode(payload)
    except msgspec.ValidationError as error:
        return str(error)
    except msgspec.DecodeError as error:
        return f"not JSON: {error}"
    for index, reading in enumerate(message.readings):
        if reading.alarms is not UNSET and len(set(reading.alarms)) != len(reading.alarms):
            return f"readings/{index}/alarms: has non-unique elements"
    return message
