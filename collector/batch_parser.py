"""Turn raw MQTT ``reads`` messages into rows, or into dead letters with the reason."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from msgspec import UNSET

from collector.fast_reads import decode_reads
from collector.validation import schema_errors

# The staging table's columns, in COPY order.
ROW_COLUMNS = ("meter_id", "ts", "volume_m3", "flow_m3h", "reverse_volume_m3", "alarms", "gateway_id", "batch_seq")
ReadingRow = tuple[str, str, str, float | None, str | None, list[str], str, int]


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    rows: list[ReadingRow]


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    reason: str


def parse_reads_message(topic: str, payload: bytes | bytearray) -> ParsedMessage | RejectedMessage:
    """Rows of a valid message; a rejection with every reason otherwise.

    The msgspec fast path decodes and validates in one pass; what it refuses is explained by the
    JSON Schema validator (and refused with msgspec's reason if the schema would let it through).
    """
    decoded = decode_reads(payload)
    if isinstance(decoded, str):
        return RejectedMessage(_explain(payload, decoded))
    gateway_id = decoded.gateway_id
    topic_parts = topic.split("/")
    if len(topic_parts) >= 2 and topic_parts[-2] != gateway_id:
        return RejectedMessage(f"gateway_id {gateway_id!r} does not match the topic {topic!r}")
    batch_seq = decoded.batch_seq
    rows: list[ReadingRow] = []
    append = rows.append
    fromisoformat = datetime.fromisoformat
    for index, r in enumerate(decoded.readings):
        try:
            fromisoformat(r.ts)  # the pattern admits month 13; the calendar does not
        except ValueError:
            return RejectedMessage(f"readings/{index}/ts: {r.ts!r} is not a real UTC time")
        flow = r.flow_m3h
        reverse = r.reverse_volume_m3
        alarms = r.alarms
        append(
            (
                r.meter_id,
                r.ts,
                repr(r.volume_m3),
                None if flow is UNSET else flow,
                None if reverse is UNSET else repr(reverse),
                [] if alarms is UNSET else list(alarms),
                gateway_id,
                batch_seq,
            )
        )
    return ParsedMessage(rows)


def _explain(payload: bytes | bytearray, fast_reason: str) -> str:
    try:
        message: Any = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"not JSON: {error}"
    errors = schema_errors("reads", message)
    return "; ".join(errors[:10]) if errors else fast_reason
