"""A parsed data record to the normalised :class:`DataRecord` (quantity, SI unit, scaled value).

Kept apart from parsing so the fast path can share the decisions: ``describe`` gives everything that
depends only on the record's DIB and VIB (its "layout"), ``convert`` applies it to one raw value.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.codings import DATA_SIZE, LVAR_NUMBER_MAX_BYTES, lvar_binary_number
from firmware_protocols.mbus.dib import FUNCTIONS, storage_tariff_subunit
from firmware_protocols.mbus.timetypes import date_g, datetime_f, datetime_i, summer_time_f, summer_time_i, time_j
from firmware_protocols.mbus.vif_tables import COMBINABLE, lookup
from firmware_protocols.records import DataRecord, Function, Value


class Layout(NamedTuple):
    """What one record's DIB and VIB say, once worked out."""

    quantity: str
    unit: str | None
    storage: int
    tariff: int
    subunit: int
    function: Function
    data_field: int
    #: ``number``, ``integer``, ``raw``, ``date``, ``datetime``, ``datetime_s`` or ``time``
    kind: str
    exponent: int
    factor: int | Fraction
    offset: int | Fraction = 0


def describe(
    dif: int,
    difes: list[tuple[int, int, int]],
    vif: int,
    vifes: list[int],
    plain_text: str | None,
) -> Layout:
    """The meaning of a record's DIB (DIF byte, DIFEs as (storage, tariff, subunit)) and VIB."""
    storage, tariff, subunit = storage_tariff_subunit((dif >> 6) & 1, difes)
    function: Function = FUNCTIONS[(dif >> 4) & 3]  # type: ignore[assignment]
    data_field = dif & 0x0F
    if vif in (0xFB, 0xFD):
        if not vifes:
            raise DecodeError(f"VIF {vif:02X}h without the extension's VIFE")
        entry = lookup(vif, vifes[0])
        combinable = vifes[1:]
    else:
        entry = lookup(vif, None)
        combinable = vifes
    quantity, unit, exponent, factor, kind, offset = entry
    if vif & 0x7F == 0x7F:  # manufacturer-specific VIF: its VIFEs are the manufacturer's too
        if vifes:
            quantity += "_" + "".join(f"{code & 0x7F:02x}" for code in vifes)
        combinable = []
    if plain_text is not None:
        quantity, unit, kind = "plain_text", plain_text, "number"
    suffixes: list[str] = []
    for index, code in enumerate(combinable):
        if code & 0x7F == 0x7F:
            # Table 15: the rest of the VIFEs are manufacturer specific. They qualify the quantity
            # (meters use them for the phase, the channel...), so they go into its name, while the
            # VIF's unit and exponent still hold (libmbus and the meters' manuals agree).
            rest = "".join(f"{c & 0x7F:02x}" for c in combinable[index + 1 :])
            suffixes.append("manufacturer" + (f"_{rest}" if rest else ""))
            break
        vife = COMBINABLE[code & 0x7F]
        if vife.value == "timepoint":  # Table 15: "date (/time) of": types G/F, not the VIF's unit
            unit, exponent, factor, offset, kind = None, 0, 1, 0, "timepoint"
        elif vife.value == "duration":  # Table 15: "duration of", nn = s, min, h, d
            unit, exponent, factor, offset, kind = "s", 0, vife.factor, 0, "number"
        elif vife.value == "count":  # Table 15: "number of exceeds"
            unit, exponent, factor, offset, kind = None, 0, 1, 0, "number"
        exponent += vife.exponent
        if vife.suffix:
            suffixes.append(vife.suffix)
        if vife.unit_suffix and unit is not None:
            unit += vife.unit_suffix
            offset = 0  # a rate or ratio of a temperature converts as a difference: no offset
    if kind == "timepoint":
        kind, quantity = _timepoint(data_field, quantity)
    if suffixes:
        quantity = "_".join([quantity, *suffixes])
    return Layout(quantity, unit, storage, tariff, subunit, function, data_field, kind, exponent, factor, offset)


def _timepoint(data_field: int, quantity: str) -> tuple[str, str]:
    """Date/time VIFs take their type from the data field's size (Annex A)."""
    generic = quantity in ("date", "datetime")
    if data_field == 0x2:
        return "date", "date" if generic else quantity
    if data_field == 0x4:
        return "datetime", "datetime" if generic else quantity
    if data_field == 0x6:
        return "datetime_s", "datetime" if generic else quantity
    if data_field == 0x3:
        return "time", "time" if generic else quantity
    return "integer", quantity


_SIZES = {0x2: 2, 0x3: 3, 0x4: 4, 0x6: 6}
_BINARY_INTEGERS = frozenset({0x1, 0x2, 0x3, 0x4, 0x6, 0x7})  # the integer data fields (Table 5)


def exact_terms(exponent: int, factor: int | Fraction, offset: int | Fraction = 0) -> tuple[int, int, int]:
    """Integers ``(a, b, c)`` with ``raw * factor * 10**exponent + offset == (raw * a + b) / c``."""
    multiplier = Fraction(factor) * Fraction(10) ** exponent
    shift = Fraction(offset)
    c = multiplier.denominator * shift.denominator // math.gcd(multiplier.denominator, shift.denominator)
    return multiplier.numerator * (c // multiplier.denominator), shift.numerator * (c // shift.denominator), c


def scale(raw: int | float, exponent: int, factor: int | Fraction, offset: int | Fraction = 0) -> int | float:
    """``raw * factor * 10**exponent + offset``, the decimal exponent applied first (see records.py).

    With an integer factor (time units, per-minute flow, Mcal): multiply, then divide by the power of
    ten for a negative exponent; the value stays an integer for the others. With a fractional factor
    or an offset (the J, GJ, °F and ft3 conversions) the value is worked out exactly, as a fraction
    of integers, and rounded once to the nearest float: Python's ``int / int`` is correctly rounded,
    so 43200 J is 12.0 Wh, never 12.000000000000002, and a value no float holds exactly (1 J =
    0.0002777777777777778 Wh) is the float nearest to it, with no digit dropped that the raw value
    had. Such values are always floats.
    """
    if isinstance(factor, Fraction) or offset:
        a, b, c = exact_terms(exponent, factor, offset)
        if isinstance(raw, float):  # Type H: a float is an exact binary fraction
            numerator, denominator = raw.as_integer_ratio()
            return (numerator * a + b * denominator) / (denominator * c)
        return (raw * a + b) / c
    if factor != 1:
        raw = raw * factor
    if exponent >= 0:
        return raw * 10**exponent if exponent else raw
    return raw / 10**-exponent


def convert(layout: Layout, raw: Any) -> Value:
    """One raw data-field value (as the coding decoded it) to the normalised value."""
    if raw is None:
        return None
    kind = layout.kind
    if kind == "number":
        if isinstance(raw, str):
            return raw
        return scale(raw, layout.exponent, layout.factor, layout.offset)
    if kind == "integer" and isinstance(raw, int) and raw < 0 and layout.data_field in _BINARY_INTEGERS:
        # identifiers, flags and counts are type C (unsigned) or D (bit array), Annex A: an address
        # of FAh is 250, error flags 8000h are bit 15, not -6 and -32768 (the codings read type B)
        return raw & ((1 << (8 * DATA_SIZE[layout.data_field])) - 1)
    if kind in ("integer", "raw"):
        return raw
    data = _time_bytes(layout, raw)
    if kind == "date":
        return date_g(data)
    if kind == "datetime":
        return datetime_f(data)
    if kind == "datetime_s":
        return datetime_i(data)
    return time_j(data)


def _time_bytes(layout: Layout, raw: int) -> bytes:
    """A date or time's data field as the bytes it came in (the codings read it as a signed integer)."""
    size = _SIZES[layout.data_field]
    return (raw & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


_SUMMER_TIME = {"datetime": summer_time_f, "datetime_s": summer_time_i}


def summer_time(layout: Layout, raw: Any) -> bool | None:
    """The SU bit of a type F or I date and time (see ``timetypes``); ``None`` for other records."""
    su = _SUMMER_TIME.get(layout.kind)
    return None if su is None or raw is None else su(_time_bytes(layout, raw))


def to_record(layout: Layout, raw: Any) -> DataRecord:
    return DataRecord(
        quantity=layout.quantity,
        unit=layout.unit,
        value=convert(layout, raw),
        storage=layout.storage,
        tariff=layout.tariff,
        subunit=layout.subunit,
        function=layout.function,
        summer_time=summer_time(layout, raw),
    )


def layout_of(parsed: Any) -> Layout:
    """The :class:`Layout` of a record parsed by ``record.DataRecordBlock``."""
    dib, vib = parsed.dib, parsed.vib
    dif = dib.dif
    dif_byte = (dif.extension << 7) | (dif.storage_lsb << 6) | (dif.function << 4) | dif.data_field
    difes = [(d.storage, d.tariff, d.subunit) for d in (dib.difes or [])]
    return describe(dif_byte, difes, vib.vif, list(vib.vifes or []), vib.plain_text)


def normalise(parsed: Any) -> DataRecord:
    layout = layout_of(parsed)
    raw = parsed.data
    if layout.data_field == 0xD:
        lvar_type, raw = raw  # LVAR: (kind, value); a binary number's value is hex, most significant first
        if layout.kind == "number" and lvar_type == "binary" and len(raw) <= 2 * LVAR_NUMBER_MAX_BYTES:
            # a number in its VIF's unit and exponent, like any other data field (fastpath: the same)
            raw = lvar_binary_number(bytes.fromhex(raw)[::-1])
        elif layout.kind not in ("number", "integer", "raw"):
            return to_record(layout._replace(kind="raw"), raw)
    return to_record(layout, raw)
