"""The ``reads`` contract as msgspec types: decode and validate a message in one pass, in C.

This is the collector's fast path; ``aquami/contracts/reads.schema.json`` stays the contract. These
types say the same thing (tests/collector/test_ingest_fast_path.py checks both agree on generated
messages): patterns end with ``\\Z`` and take ASCII digits, as ECMA-262 reads the schema's ``$`` and
``\\d`` (Python's ``re`` would take a final line break, and any script's digits), and, one deliberate
strictness, JSON's non-standard ``NaN``/``Infinity`` are not numbers. Anything this path refuses
goes through the JSON Schema validator, which says why.

A reading's ``meter_id`` and ``ts`` are decoded as plain strings and checked against their patterns
once per distinct value in the message (:func:`decode_reads_keys`): a batch repeats them, and
msgspec would run a Python regular expression for every string, most of the cost of decoding.
What is refused, and the reason's words, are the same as msgspec's own check.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from aquami.contracts.reads import FLOW_MAX_M3H, IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN, VOLUME_MAX_M3

ID_PATTERN = IDENTIFIER_PATTERN
TS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)\Z"
ID_MAX_LENGTH = IDENTIFIER_MAX_LENGTH
Identifier = Annotated[str, Meta(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
UtcTimestamp = Annotated[str, Meta(pattern=TS_PATTERN)]
Alarm = Literal["leak", "burst", "tamper", "reverse_flow", "dry", "low_battery", "meter_error"]
Protocol = Literal["modbus-tcp", "modbus-rtu", "mbus", "wmbus", "pulse"]

_id_match = re.compile(ID_PATTERN).match
_ts_match = re.compile(TS_PATTERN).match


# A reading and its source hold only strings, numbers and a list of strings: they can never be part
# of a reference cycle, so the garbage collector need not track them (gc=False); a batch of 10,000
# tracked objects would otherwise set off collections while it is decoded.
class Source(Struct, forbid_unknown_fields=True, gc=False):
    protocol: Protocol
    bus: Annotated[str, Meta(max_length=128)] | UnsetType = UNSET
    address: str | int | UnsetType = UNSET


class Reading(Struct, forbid_unknown_fields=True, gc=False):
    # meter_id and ts are checked against ID_PATTERN / TS_PATTERN once per distinct value in a
    # message (decode_reads_keys), not once per reading: a batch repeats them (a meter's hours, a
    # poll's timestamp) and a regular expression per string is most of the cost of decoding.
    meter_id: str
    ts: str
    volume_m3: Annotated[float, Meta(ge=0, le=VOLUME_MAX_M3)]
    flow_m3h: Annotated[float, Meta(ge=-FLOW_MAX_M3H, le=FLOW_MAX_M3H)] | UnsetType = UNSET
    reverse_volume_m3: Annotated[float, Meta(ge=0, le=VOLUME_MAX_M3)] | UnsetType = UNSET
    alarms: list[Alarm] | UnsetType = UNSET
    source: Source | UnsetType = UNSET


class ReadsMessage(Struct, forbid_unknown_fields=True):
    gateway_id: Identifier
    batch_seq: Annotated[int, Meta(ge=0, le=2**63 - 1)]  # the schema's maximum: a bigint
    sent_at: UtcTimestamp
    readings: Annotated[list[Reading], Meta(min_length=1, max_length=10_000)]


_decoder = msgspec.json.Decoder(ReadsMessage)


def decode_reads(payload: bytes | bytearray) -> ReadsMessage | str:
    """The message, or msgspec's reason for refusing it."""
    decoded = decode_reads_keys(payload)
    return decoded if isinstance(decoded, str) else decoded[0]


def decode_reads_keys(payload: bytes | bytearray) -> tuple[ReadsMessage, set[str], set[str]] | str:
    """The message with its distinct meter ids and timestamps, or the reason for refusing it."""
    try:
        message = _decoder.decode(payload)
    except msgspec.ValidationError as error:
        return str(error)
    except msgspec.DecodeError as error:
        return f"not JSON: {error}"
    readings = message.readings
    meter_ids = {r.meter_id for r in readings}
    timestamps = {r.ts for r in readings}
    bad_ids = {v for v in meter_ids if len(v) > ID_MAX_LENGTH or _id_match(v) is None}
    bad_ts = {v for v in timestamps if _ts_match(v) is None}
    if bad_ids or bad_ts:
        return _refused(readings, bad_ids, bad_ts)
    if any(r.alarms for r in readings):
        for index, reading in enumerate(readings):
            if reading.alarms and len(set(reading.alarms)) != len(reading.alarms):
                return f"readings/{index}/alarms: has non-unique elements"
    return message, meter_ids, timestamps


def _refused(readings: list[Reading], bad_ids: set[str], bad_ts: set[str]) -> str:
    """msgspec's words for the first string it would have refused, in the message's order."""
    for index, r in enumerate(readings):
        if r.meter_id in bad_ids:
            expected = (
                f"of length <= {ID_MAX_LENGTH}" if len(r.meter_id) > ID_MAX_LENGTH else f"matching regex {ID_PATTERN!r}"
            )
            return f"Expected `str` {expected} - at `$.readings[{index}].meter_id`"
        if r.ts in bad_ts:
            return f"Expected `str` matching regex {TS_PATTERN!r} - at `$.readings[{index}].ts`"
    raise AssertionError("a refused value is in no reading")
