"""Turn raw MQTT ``events`` messages into rows, or into dead letters with the reason.

The payload is one event (aquami/contracts/events.schema.json): ``gateway_id``, ``event``, ``ts``,
``meter_id`` for meter events, and the event's own fields, which are stored together as ``detail``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aquami.contracts.events import ENVELOPE_FIELDS, TIME_FIELDS, schema_errors
from collector.batch_parser import TS_MIN, RejectedMessage, latest_timely, why_untimely

# The staging table's columns, in COPY order (collector/store.py).
EVENT_COLUMNS = ("meter_id", "ts", "event", "state", "detail", "gateway_id", "batch_seq")
# meter_id is None for a gateway event; state is always "raised" (no gateway event is a clearing);
# an event is its own message, so there is no batch_seq.
EventRow = tuple[str | None, str, str, str, str | None, str, int | None]


def parse_events_message(
    topic: str, payload: bytes | bytearray, received_at: datetime | None = None
) -> list[EventRow] | RejectedMessage:
    """The rows of a valid event (one), or a rejection naming every field that is wrong.

    Its times are held to the bounds of the readings' (:data:`collector.batch_parser.TS_MIN`, and
    ``FUTURE_MAX`` after ``received_at``, by default now): a gateway's clock that dates its reads
    1970-01-01 dates its events so too, and an event dated then (or 2099) was stored as fact beside
    the readings refused as dead letters."""
    try:
        message: Any = json.loads(payload)
    except ValueError as error:  # not UTF-8, not JSON, or an integer of over 4,300 digits
        return RejectedMessage(f"not JSON: {error}")
    errors = schema_errors(message)  # its patterns read as ECMA-262's: "WM-2\n" is no meter id
    if errors:
        return RejectedMessage("; ".join(errors[:10]))
    gateway_id = message["gateway_id"]
    topic_parts = topic.split("/")
    if len(topic_parts) >= 2 and topic_parts[-2] != gateway_id:
        return RejectedMessage(f"gateway_id {gateway_id!r} does not match the topic {topic!r}")
    received = (received_at or datetime.now(UTC)).astimezone(UTC)
    latest = latest_timely(received)
    for name in TIME_FIELDS:
        value = message.get(name)
        if value is None:
            continue
        try:
            datetime.fromisoformat(value)  # the pattern admits month 13; the calendar does not
        except ValueError:
            return RejectedMessage(f"{name}: {value!r} is not a real UTC time")
        if not TS_MIN <= value[:19] <= latest:
            why = why_untimely(value, received)
            return RejectedMessage(f"{name}: {value!r} is {why} (the gateway's clock is wrong)")
    detail = {k: v for k, v in message.items() if k not in ENVELOPE_FIELDS}
    return [
        (
            message.get("meter_id"),
            message["ts"],
            message["event"],
            "raised",
            json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else None,
            gateway_id,
            None,
        )
    ]
