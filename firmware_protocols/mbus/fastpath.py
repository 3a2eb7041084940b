"""The fast path: a decoding plan per record layout, made once from the Construct parse, then reused.

A meter sends the same records in every frame; only the data fields change. The plan remembers
the bytes that fix the layout (every DIB and VIB, LVAR bytes, idle fillers, the 0Fh/1Fh marker) and
where they sit. If a frame has exactly those bytes at those places and the same length, then parsing
it would walk the same path (each record's length follows from its own DIB/VIB, so every record
starts where it started before), and the plan can read all data fields with one precompiled
``struct`` unpack and convert them with converters chosen beforehand. Otherwise the reference path
decodes the frame and leaves a plan for next time.

``tests/firmware_protocols/test_mbus_*`` check this path against the Construct path on every corpus
frame and in the property tests.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from fractions import Fraction
from operator import itemgetter
from typing import Any

from firmware_protocols.mbus.codings import (
    LVAR_NUMBER_MAX_BYTES,
    bcd_decode,
    lvar_binary_number,
    lvar_decode,
    lvar_kind,
)
from firmware_protocols.mbus.normalise import Layout, exact_terms, layout_of
from firmware_protocols.mbus.record import parse_items_located
from firmware_protocols.mbus.timetypes import date_g, datetime_f, datetime_i, summer_time_f, summer_time_i, time_j

Converter = Callable[[Any], Any] | None

MAX_PLANS = 4096  # bounded memory: a bus has far fewer layouts; past this the cache starts again

_STRUCT_INT = {0x1: "b", 0x2: "h", 0x4: "i", 0x7: "q"}
_BYTES = {0x3: 3, 0x6: 6, 0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6}
_TIME = {"date": date_g, "datetime": datetime_f, "datetime_s": datetime_i, "time": time_j}
_SUMMER_TIME = {"datetime": summer_time_f, "datetime_s": summer_time_i}  # the SU bit, beside the value


def _bcd(data: bytes) -> int | None:
    try:
        return int(data[::-1].hex())
    except ValueError:
        return bcd_decode(data)


def _int_le(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def _uint_le(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _scaler(exponent: int, factor: int | Fraction, offset: int | Fraction = 0) -> Converter:
    """``raw * factor * 10**exponent + offset`` the same way ``normalise.scale`` does it, or None for 1."""
    if isinstance(factor, Fraction) or offset:
        a, b, c = exact_terms(exponent, factor, offset)

        def exact(raw: int | float) -> float:
            if isinstance(raw, float):
                numerator, denominator = raw.as_integer_ratio()
                return (numerator * a + b * denominator) / (denominator * c)
            return (raw * a + b) / c

        return exact
    if exponent < 0:
        divisor = 10**-exponent
        if factor == 1:
            return lambda raw: raw / divisor
        return lambda raw: (raw * factor) / divisor
    multiplier = factor * 10**exponent if exponent else factor
    if multiplier == 1:
        return None
    if factor == 1:
        return lambda raw: raw * multiplier
    return lambda raw: (raw * factor) * 10**exponent if exponent else raw * factor


def _then(first: Callable[[Any], Any], second: Converter) -> Callable[[Any], Any]:
    if second is None:
        return first

    def both(raw: Any) -> Any:
        value = first(raw)
        return None if value is None else second(value)

    return both


def _field(layout: Layout, lvar: int | None) -> tuple[str, Converter]:
    """The struct code for a record's data field and the converter to its normalised value."""
    field, kind = layout.data_field, layout.kind
    scale = _scaler(layout.exponent, layout.factor, layout.offset) if kind == "number" else None
    if field == 0xD:
        assert lvar is not None
        lvar_type, size = lvar_kind(lvar)

        def decode_lvar(data: bytes) -> Any:
            return lvar_decode(lvar_type, data)

        if kind == "number" and lvar_type in ("bcd", "negative_bcd"):
            return f"{size}s", _then(decode_lvar, scale)
        if kind == "number" and lvar_type == "binary" and size <= LVAR_NUMBER_MAX_BYTES:  # Type B, scaled
            return f"{size}s", _then(lvar_binary_number, scale)
        return f"{size}s", decode_lvar
    if kind in _TIME and field in (0x2, 0x3, 0x4, 0x6):
        return f"{(0, 0, 2, 3, 4, 0, 6)[field]}s", _TIME[kind]
    unsigned = kind == "integer"  # identifiers, flags and counts: types C and D (normalise.convert)
    if field in _STRUCT_INT:
        return _STRUCT_INT[field].upper() if unsigned else _STRUCT_INT[field], scale
    if field == 0x5:
        return "f", _then(_finite, scale)
    if field in (0x3, 0x6):
        return f"{_BYTES[field]}s", _then(_uint_le if unsigned else _int_le, scale)
    return f"{_BYTES[field]}s", _then(_bcd, scale)


class Plan:
    """How to decode every frame body with one record layout."""

    __slots__ = (
        "_check",
        "_expected",
        "_fixed",
        "_simple",
        "_summer_time",
        "_unpack",
        "items",
        "manufacturer_at",
        "more",
    )

    def __init__(self, body: bytes) -> None:
        items, skipped, manufacturer, more = parse_items_located(body)
        spans: list[slice] = [slice(position, position + 1) for position in skipped]
        formats = ["<"]
        cursor = 0
        self.items: list[tuple[dict[str, Any], Converter, bool]] = []
        #: (record, data field) index pairs of the type F and I records, with their SU bit's reader
        self._summer_time: list[tuple[int, int, Callable[[bytes], bool | None]]] = []
        for item in items:
            layout = layout_of(item)
            data_start = item.data_offset
            lvar = None
            if layout.data_field == 0xD:
                lvar = body[data_start]
                data_start += 1
            spans.append(slice(item.start, data_start))
            template = {
                "storage": layout.storage,
                "tariff": layout.tariff,
                "subunit": layout.subunit,
                "function": layout.function,
                "quantity": layout.quantity,
                "unit": layout.unit,
            }
            if item.end == data_start:  # no data field (or LVAR of length 0): a constant value
                converter = _field(layout, lvar)[1] if layout.data_field == 0xD else None
                constant = converter(b"") if converter is not None else None
                self.items.append(({**template, "value": constant}, None, False))
                continue
            code, converter = _field(layout, lvar)
            if layout.kind in _SUMMER_TIME:  # (type F or I: a data field of 4 or 6 bytes, read as bytes)
                self._summer_time.append((len(self.items), len(formats) - 1, _SUMMER_TIME[layout.kind]))
            formats.append(f"{data_start - cursor}x{code}" if data_start > cursor else code)
            cursor = item.end
            self.items.append((template, converter, True))
        self._unpack = struct.Struct("".join(formats)).unpack_from
        self._expected = tuple(body[span] for span in spans)
        self._check = itemgetter(*spans) if spans else None
        self._fixed = len(spans) == 1
        self.manufacturer_at = skipped[-1] + 1 if manufacturer is not None else None
        self.more = more
        every_has_data = all(has_data for _, _, has_data in self.items)
        self._simple = [(t, c) for t, c, _ in self.items] if every_has_data else None

    def matches(self, body: bytes) -> bool:
        if self._check is None:
            return not self._expected
        found = self._check(body)
        return (found == self._expected[0]) if self._fixed else (found == self._expected)

    def decode(self, body: bytes) -> list[dict[str, Any]]:
        """The records as ``DataRecord.to_json()`` dicts."""
        raws = self._unpack(body)
        records = self._records(raws)
        for record_index, field_index, summer_time in self._summer_time:
            su = summer_time(raws[field_index])
            if su is not None:
                records[record_index]["summer_time"] = su
        return records

    def _records(self, raws: tuple[Any, ...]) -> list[dict[str, Any]]:
        if self._simple is not None:  # every record has a data field: one comprehension
            return [
                {**template, "value": raw if converter is None else converter(raw)}
                for (template, converter), raw in zip(self._simple, raws, strict=True)
            ]
        values = iter(raws)
        records = []
        for template, converter, has_data in self.items:
            if not has_data:
                records.append(template.copy())
                continue
            record = template.copy()
            raw = next(values)
            record["value"] = raw if converter is None else converter(raw)
            records.append(record)
        return records


_PLANS: dict[int, list[Plan]] = {}
_count = 0


def plan_for(body: bytes) -> Plan:
    """The cached plan for this body's layout; made (by the reference parse) when new.

    Raises ``DecodeError`` through the reference parse when the body is malformed.
    """
    global _count
    candidates = _PLANS.get(len(body))
    if candidates:
        for plan in candidates:
            if plan.matches(body):
                return plan
    plan = Plan(body)
    if _count >= MAX_PLANS:
        _PLANS.clear()
        _count = 0
    _PLANS.setdefault(len(body), []).insert(0, plan)
    _count += 1
    return plan


def decode_body(body: bytes) -> tuple[list[dict[str, Any]], str | None, bool]:
    """Records (as dicts), manufacturer data (hex) and more-records-follow for a records area."""
    plan = plan_for(body)
    manufacturer = body[plan.manufacturer_at :].hex() if plan.manufacturer_at is not None else None
    return plan.decode(body), manufacturer, plan.more
