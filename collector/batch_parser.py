"""Turn raw MQTT ``reads`` messages into rows, or into dead letters with the reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from msgspec import UNSET

from collector.fast_reads import ReadsMessage, decode_reads_keys
from collector.validation import schema_errors

# The staging table's columns, in COPY order.
ROW_COLUMNS = ("meter_id", "ts", "volume_m3", "flow_m3h", "reverse_volume_m3", "alarms", "gateway_id", "batch_seq")
ReadingRow = tuple[str, str, str, float | None, str | None, list[str], str, int]


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A valid ``reads`` message, ready for the database.

    ``copy_data`` is its readings in ``COPY`` text format (``ROW_COLUMNS`` order), built here, on
    the collector's parser thread as the message arrives, in one pass over the decoded readings:
    the writer only joins messages' bytes. :attr:`rows` gives the same readings as tuples, for callers that want them.
    """

    message: ReadsMessage
    meter_ids: set[str]
    copy_data: bytes
    oldest_ts: str  # the earliest reading's time to the second, "YYYY-MM-DDTHH:MM:SS" (UTC)
    # the message's readings dated out of bounds, as a dead letter: (reason, their message as JSON)
    untimely: tuple[str, bytes] | None = None
    untimely_count: int = 0  # how many readings ``untimely`` holds

    @property
    def gateway_id(self) -> str:
        return self.message.gateway_id

    @property
    def count(self) -> int:
        """The readings to store (the untimely left out)."""
        return len(self.message.readings)

    @property
    def arrived(self) -> int:
        """The readings the message came with, the untimely included."""
        return self.count + self.untimely_count

    def timely_payload(self) -> bytes:
        """The message as JSON with only the readings to store: what a dead letter of it holds when
        its untimely readings are already one of their own (the same fields; order and spacing may differ)."""
        return msgspec.json.encode(self.message)

    @property
    def rows(self) -> list[ReadingRow]:
        gateway_id, batch_seq = self.message.gateway_id, self.message.batch_seq
        return [
            (
                r.meter_id,
                r.ts,
                repr(r.volume_m3),
                None if r.flow_m3h is UNSET else r.flow_m3h,
                None if r.reverse_volume_m3 is UNSET else repr(r.reverse_volume_m3),
                list(r.alarms) if r.alarms else [],
                gateway_id,
                batch_seq,
            )
            for r in self.message.readings
        ]


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    reason: str
    # the readings of a ``reads`` message that keeps to the contract, refused all the same (every one
    # dated out of bounds); 0 for one that breaks it, whose readings are not counted as readings
    readings: int = 0


#: A reading dated before this, or more than ``FUTURE_MAX`` after the collector received it, is a
#: dead letter, not a reading (a meter's or gateway's clock gone wrong: 9999-12-31 was stored as
#: actual). VEE's own checks are narrower and only flag: 5 minutes ahead, 400 days back.
TS_MIN = "2000-01-01T00:00:00"
FUTURE_MAX = timedelta(days=1)


def latest_timely(received: datetime) -> str:
    """The latest time, as the contract's text to the second, that is not after ``received`` by
    more than ``FUTURE_MAX``: every time matches the contract's pattern (UTC, to the second), so
    its text sorts as its time does, and ``TS_MIN <= ts[:19] <= latest`` is the bounds check."""
    return (received + FUTURE_MAX).strftime("%Y-%m-%dT%H:%M:%S")


def why_untimely(ts: str, received: datetime) -> str:
    """Why a time found out of bounds is: the words readings' and events' dead letters share."""
    if ts[:19] < TS_MIN:
        return "before 2000-01-01"
    return f"more than a day after the collector received it ({received.strftime('%Y-%m-%dT%H:%M:%SZ')})"


def parse_reads_message(
    topic: str, payload: bytes | bytearray, received_at: datetime | None = None
) -> ParsedMessage | RejectedMessage:
    """The readings of a valid message; a rejection with every reason otherwise.

    The msgspec fast path decodes and validates in one pass; what it refuses is explained by the
    JSON Schema validator (and refused with msgspec's reason if the schema would let it through).
    Readings dated out of bounds (``TS_MIN``, ``FUTURE_MAX`` after ``received_at``, by default
    now) are left out and returned as the message's ``untimely`` dead letter; a message with no
    other reading is refused.
    """
    decoded = decode_reads_keys(payload)
    if isinstance(decoded, str):
        return RejectedMessage(_explain(payload, decoded))
    message, meter_ids, timestamps = decoded
    gateway_id = message.gateway_id
    topic_parts = topic.split("/")
    if len(topic_parts) >= 2 and topic_parts[-2] != gateway_id:
        return RejectedMessage(f"gateway_id {gateway_id!r} does not match the topic {topic!r}")
    fromisoformat = datetime.fromisoformat
    for ts in timestamps:  # once per distinct time: a batch repeats them
        try:
            fromisoformat(ts)  # the pattern admits month 13; the calendar does not
        except ValueError:
            index = next(i for i, r in enumerate(message.readings) if r.ts == ts)
            return RejectedMessage(f"readings/{index}/ts: {ts!r} is not a real UTC time")
    # Every time matches the contract's pattern: to the second, their text sorts as their times do.
    received = (received_at or datetime.now(UTC)).astimezone(UTC)
    latest = latest_timely(received)
    untimely = {ts for ts in timestamps if not TS_MIN <= ts[:19] <= latest}
    if not untimely:
        return ParsedMessage(message, meter_ids, _copy_data(message), min(ts[:19] for ts in timestamps))
    return _without_untimely(message, untimely, received)


def _without_untimely(message: ReadsMessage, untimely: set[str], received: datetime) -> ParsedMessage | RejectedMessage:
    kept = [r for r in message.readings if r.ts not in untimely]
    refused = [(i, r) for i, r in enumerate(message.readings) if r.ts in untimely]
    reasons = [f"readings/{i}/ts: {r.ts!r} is {why_untimely(r.ts, received)}" for i, r in refused[:3]]
    more = f"; and {len(refused) - 3} more" if len(refused) > 3 else ""
    reason = f"{len(refused)} of {len(message.readings)} readings refused: " + "; ".join(reasons) + more
    if not kept:
        return RejectedMessage(reason, readings=len(refused))
    letter = (reason, msgspec.json.encode(msgspec.structs.replace(message, readings=[r for _, r in refused])))
    message = msgspec.structs.replace(message, readings=kept)
    timestamps = {r.ts for r in kept}
    meter_ids = {r.meter_id for r in kept}
    oldest = min(ts[:19] for ts in timestamps)
    return ParsedMessage(message, meter_ids, _copy_data(message), oldest, letter, len(refused))


def without_readings(
    parsed: ParsedMessage, refuse: Callable[[str, str], bool]
) -> tuple[ParsedMessage | None, list[tuple[str, bytes]]]:
    """The message without the readings ``refuse(meter_id, ts)`` is true of (None when none is
    left), and each meter's refused readings as a message of their own, as JSON: (meter_id, payload)."""
    message = parsed.message
    refused = [refuse(r.meter_id, r.ts) for r in message.readings]
    kept = [r for r, no in zip(message.readings, refused, strict=True) if not no]
    gone = [r for r, no in zip(message.readings, refused, strict=True) if no]
    encode, replace = msgspec.json.encode, msgspec.structs.replace
    letters = [
        (meter_id, encode(replace(message, readings=[r for r in gone if r.meter_id == meter_id])))
        for meter_id in sorted({r.meter_id for r in gone})
    ]
    if not kept:
        return None, letters
    message = replace(message, readings=kept)
    oldest = min(r.ts[:19] for r in kept)
    return ParsedMessage(message, {r.meter_id for r in kept}, _copy_data(message), oldest), letters


def _copy_data(message: ReadsMessage) -> bytes:
    """The readings as COPY text, the same bytes ``collector.store.copy_text(rows)`` gives.

    Every field has passed the contract (identifiers and UTC timestamps by pattern, alarm names by
    enumeration, numbers as floats), so none can hold a tab, newline or backslash to escape.
    """
    unset, null = UNSET, "\\N"
    tail = f"\t{message.gateway_id}\t{message.batch_seq}\n"
    return "".join(
        [
            f"{r.meter_id}\t{r.ts}\t{r.volume_m3!r}\t"
            f"{null if r.flow_m3h is unset else repr(r.flow_m3h)}\t"
            f"{null if r.reverse_volume_m3 is unset else repr(r.reverse_volume_m3)}\t"
            f"{{{','.join(r.alarms) if r.alarms else ''}}}{tail}"
            for r in message.readings
        ]
    ).encode()


#: Past this size a refused message is not explained by the JSON Schema validator (it holds more
#: than the contract's 10,000 readings could take): at about a second per megabyte, on the thread
#: that receives messages, a 68 MB message kept the collector past its keepalive, disconnected and
#: sent the same message again, round after round.
EXPLAIN_MAX_BYTES = 4_000_000
#: The contract's most readings in a message (reads.schema.json's maxItems). A message with more is
#: refused by its count, its readings not validated: 600,000 ``{}`` (1.8 MB) took 75 s to explain.
READINGS_MAX = 10_000
#: The explanation stops after this many errors (and says there are more).
EXPLAIN_MAX_ERRORS = 20
#: Each reason's length in a dead letter and the log: the validator's message for a list too long
#: repeats the whole list (700 KB for 10,001 readings).
REASON_MAX_CHARS = 300


def _explain(payload: bytes | bytearray, fast_reason: str) -> str:
    if len(payload) > EXPLAIN_MAX_BYTES:
        return f"{len(payload)} bytes, more than a reads message holds: {_cut(fast_reason)}"
    try:
        message: Any = json.loads(payload)
    except ValueError as error:  # not UTF-8, not JSON, or an integer of over 4,300 digits
        return f"not JSON: {error}"
    readings = message.get("readings") if isinstance(message, dict) else None
    if isinstance(readings, list) and len(readings) > READINGS_MAX:
        return f"readings: {len(readings)} items, more than the contract's {READINGS_MAX}"
    errors = schema_errors("reads", message, limit=EXPLAIN_MAX_ERRORS + 1)
    if not errors:
        return _cut(fast_reason)
    more = "; and more" if len(errors) > EXPLAIN_MAX_ERRORS else ""
    return "; ".join(_cut(e) for e in errors[:EXPLAIN_MAX_ERRORS]) + more


def _cut(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX_CHARS else reason[: REASON_MAX_CHARS - 1] + "…"
