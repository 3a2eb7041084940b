"""Builders: what simulators send (RSP_UD with records, E5h) and what a master sends (SND_UD selection).

Records are given at DIF/VIF level as :class:`RecordSpec` (exactly what goes on the wire), or as a
normalised :class:`DataRecord` that :func:`encode_record` turns into one by finding the VIF for its
quantity and unit and the exponent that makes its value a whole number in the chosen coding.
Every byte is built by the same Construct definitions that parse it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any, NamedTuple

from construct import ConstructError

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import link
from firmware_protocols.mbus.codings import CODING_FIELD
from firmware_protocols.mbus.dib import (
    DIF_MANUFACTURER_DATA,
    DIF_MORE_RECORDS_FOLLOW,
    FUNCTIONS,
    split_storage_tariff_subunit,
)
from firmware_protocols.mbus.frame import CI_LONG_HEADER
from firmware_protocols.mbus.header import LongHeader
from firmware_protocols.mbus.master import CI_SELECTION, SecondaryAddress
from firmware_protocols.mbus.record import DataRecordBlock
from firmware_protocols.mbus.timetypes import TypeF, TypeG
from firmware_protocols.mbus.vif_tables import COMBINABLE, EXTENSION_FB, EXTENSION_FD, PRIMARY
from firmware_protocols.records import DataRecord, Function


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """One data record as it goes on the wire.

    ``vif`` is the VIF without its E bit (7Bh/7Dh for the extension tables, whose code is then the
    first of ``vifes``); the builder sets every E bit. ``raw`` is the data field's own value: an
    integer or float before any exponent, or for ``lvar`` a pair (``text``/``bcd``/``negative_bcd``/
    ``binary``, value).
    """

    coding: str
    vif: int
    raw: Any
    vifes: tuple[int, ...] = ()
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    function: Function = "instantaneous"
    plain_text: str | None = None


def build_record(spec: RecordSpec) -> bytes:
    """A :class:`RecordSpec` to its bytes through ``record.DataRecordBlock``."""
    try:
        data_field = CODING_FIELD[spec.coding]
    except KeyError:
        raise DecodeError(f"coding {spec.coding!r}: one of {sorted(CODING_FIELD)}") from None
    storage_lsb, difes = split_storage_tariff_subunit(spec.storage, spec.tariff, spec.subunit)
    dif = {
        "extension": bool(difes),
        "storage_lsb": storage_lsb,
        "function": FUNCTIONS.index(spec.function),
        "data_field": data_field,
    }
    dife_list = [
        {"extension": i < len(difes) - 1, "subunit": u, "tariff": t, "storage": s} for i, (s, t, u) in enumerate(difes)
    ]
    vifes = list(spec.vifes)
    vif = (spec.vif & 0x7F) | (0x80 if vifes else 0)
    vife_bytes = [(code & 0x7F) | (0x80 if i < len(vifes) - 1 else 0) for i, code in enumerate(vifes)]
    container = {
        "dib": {"dif": dif, "difes": dife_list or None},
        "vib": {"vif": vif, "plain_text": spec.plain_text, "vifes": vife_bytes or None},
        "data": spec.raw,
    }
    try:
        return bytes(DataRecordBlock.build(container))
    except (ConstructError, OverflowError, ValueError, TypeError) as error:
        raise DecodeError(f"cannot build {spec}: {error}") from None


# --- From a normalised DataRecord ------------------------------------------------------------------

_INT_RANGES = {
    "int8": 8, "int16": 16, "int24": 24, "int32": 32, "int48": 48, "int64": 64,
}  # fmt: skip
_BCD_DIGITS = {"bcd2": 2, "bcd4": 4, "bcd6": 6, "bcd8": 8, "bcd12": 12}


def _fits(raw: int, coding: str) -> bool:
    lowest, highest = _range(coding)
    return lowest <= raw <= highest


def _range(coding: str) -> tuple[int, int]:
    """The lowest and highest raw integers ``coding`` carries (Type B integers; BCD with its top
    digit F for a minus sign, EN 13757-3 Annex A)."""
    if coding in _INT_RANGES:
        bits = _INT_RANGES[coding]
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    digits = _BCD_DIGITS[coding]
    return -(10 ** (digits - 1)) + 1, 10**digits - 1


#: Units whose records may fall back to a VIF in another unit that decodes to them (vif_tables.py):
#: Wh from J, GJ or Mcal; W from J/h or GJ/h; degC from °F; K from a °F difference.
_CONVERTED_UNITS = frozenset({"Wh", "W", "degC", "K"})


class _Candidate(NamedTuple):
    vif: int
    vifes: tuple[int, ...]
    exponent: int
    factor: int | Fraction = 1
    offset: int | Fraction = 0


def _qualifiers() -> dict[str, int]:
    """Combinable VIFEs (EN 13757-3:2018 Table 15) that only qualify what is measured, changing
    neither unit nor value ("forward", "backward", "uncorrected", "at_base_conditions", ...): the
    suffix the decoder appends to the quantity, to its one code (error codes and suffixes shared by
    several codes are left out)."""
    codes: dict[str, list[int]] = {}
    for code, vife in COMBINABLE.items():
        qualifies = not vife.unit_suffix and vife.exponent == 0 and not vife.value
        if vife.suffix and qualifies and not vife.suffix.startswith("error_"):
            codes.setdefault(vife.suffix, []).append(code)
    return {suffix: found[0] for suffix, found in codes.items() if len(found) == 1}


_QUALIFIERS = _qualifiers()


def _candidates(quantity: str, unit: str | None) -> list[_Candidate]:
    """Every decimal VIF that decodes to this quantity and unit: first the plain ones (the unit itself,
    largest exponent first), then those converted from another unit (largest step first). A quantity
    the tables do not name, ending in a qualifier's suffix (``volume_backward``), is the quantity
    before it with that qualifier's VIFE appended."""
    found = _table_candidates(quantity, unit)
    if found:
        return found
    for suffix, code in _QUALIFIERS.items():
        if quantity.endswith("_" + suffix):
            base = _candidates(quantity[: -len(suffix) - 1], unit)
            return [c._replace(vifes=(*c.vifes, code)) for c in base]
    return []


def _table_candidates(quantity: str, unit: str | None) -> list[_Candidate]:
    plain: list[_Candidate] = []
    converted: list[_Candidate] = []
    for table, extension in ((PRIMARY, None), (EXTENSION_FD, 0x7D), (EXTENSION_FB, 0x7B)):
        for code, entry in table.items():
            if entry.quantity != quantity or entry.unit != unit or entry.kind != "number":
                continue
            vif, vifes = (code, ()) if extension is None else (extension, (code,))
            if entry.factor == 1 and entry.offset == 0:
                plain.append(_Candidate(vif, vifes, entry.exponent))
            elif unit in _CONVERTED_UNITS:
                converted.append(_Candidate(vif, vifes, entry.exponent, entry.factor, entry.offset))
    plain.sort(key=lambda item: -item.exponent)
    converted.sort(key=lambda item: -(Fraction(item.factor) * Fraction(10) ** item.exponent))
    return plain + converted


def encode_record(record: DataRecord, coding: str = "int32") -> RecordSpec:
    """A normalised record to a :class:`RecordSpec` that decodes back to the same value.

    Numbers take the largest exponent that represents the value exactly in ``coding`` (``real32``
    uses exponent 0 where the table has it), with a VIF in the record's own unit when one does;
    otherwise a VIF in a unit that converts to it (Wh from J, GJ or Mcal, W from J/h, degC or K
    from °F), the one with the largest step first, if some raw number decodes to exactly the value.
    ``date`` values (``YYYY-MM-DD``) become type G and ``datetime`` (``YYYY-MM-DDTHH:MM``) type F,
    its SU bit set when ``summer_time`` is true; ``fabrication_no`` is sent as given.
    """
    common: dict[str, Any] = {
        "storage": record.storage,
        "tariff": record.tariff,
        "subunit": record.subunit,
        "function": record.function,
    }
    if record.summer_time is not None and record.quantity != "datetime":
        raise DecodeError(f"cannot encode {record}: only a datetime (type F) carries summer_time")
    if record.quantity == "date" and isinstance(record.value, str):
        return RecordSpec("int16", 0x6C, _type_g(record.value), **common)
    if record.quantity == "datetime" and isinstance(record.value, str):
        return RecordSpec("int32", 0x6D, _type_f(record.value, bool(record.summer_time)), **common)
    if record.quantity == "fabrication_no" and isinstance(record.value, int):
        return RecordSpec(coding, 0x78, record.value, **common)
    value = record.value
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DecodeError(f"cannot encode {record}: value is not a number")
    for candidate in _candidates(record.quantity, record.unit):
        if candidate.factor == 1 and candidate.offset == 0:
            raw = _raw_for(value, candidate.exponent, coding)
        else:
            raw = _raw_converted(value, candidate, coding)
        if raw is not None:
            return RecordSpec(coding, candidate.vif, raw, candidate.vifes, **common)
    raise DecodeError(f"no VIF encodes {record.quantity} {record.value!r} {record.unit} as {coding}")


def _raw_for(value: float, exponent: int, coding: str) -> int | float | None:
    from firmware_protocols.mbus.normalise import scale

    if coding == "real32":
        return float(value) if exponent == 0 else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    # integers divide exactly at any size (a float would lose digits past 2**53)
    raw = value // 10**exponent if isinstance(value, int) else round(value * 10**-exponent)
    if scale(raw, exponent, 1) != value or not _fits(raw, coding):
        return None
    if isinstance(value, int) == (exponent < 0):
        return None  # negative exponents decode to floats, the others to integers
    return raw


def _raw_converted(value: float, candidate: _Candidate, coding: str) -> int | float | None:
    """The raw number that a converting VIF (J, GJ, Mcal, °F...) decodes to exactly ``value``, if any."""
    from firmware_protocols.mbus.normalise import scale

    if isinstance(value, float) and not math.isfinite(value):
        return None
    step = Fraction(candidate.factor) * Fraction(10) ** candidate.exponent
    exact = (Fraction(value) - candidate.offset) / step
    raw: int | float
    if coding == "real32":
        if candidate.exponent != 0:
            return None
        raw = float(exact)
        try:
            if struct.unpack("<f", struct.pack("<f", raw))[0] != raw:
                return None  # not a single-precision number
        except (OverflowError, struct.error):
            return None
    else:
        raw = round(exact)
        if isinstance(value, float) and not _fits(raw, coding):
            # a float stands for every real within half an ulp of it: near the end of the coding's
            # range, the raw number it came from may be the one nearest the range, not to ``exact``
            half = Fraction(math.ulp(value)) / 2
            lowest = math.ceil((Fraction(value) - half - candidate.offset) / step)
            highest = math.floor((Fraction(value) + half - candidate.offset) / step)
            raw = min(max(raw, lowest, _range(coding)[0]), highest, _range(coding)[1])
        if not _fits(raw, coding):
            return None
    decoded = scale(raw, candidate.exponent, candidate.factor, candidate.offset)
    if decoded != value or type(decoded) is not type(value):
        return None
    return raw


def _year_fields(year: int) -> dict[str, int]:
    """Year to the type F/G fields, with the 1981..2080 reading of ``timetypes.full_year``."""
    if not 1981 <= year <= 2080:
        raise DecodeError(f"year {year}: types F and G carry 1981 to 2080")
    y = year % 100
    return {"year_high": y >> 3, "year_low": y & 7}


def _date_fields(year: int, month: int, day: int) -> dict[str, int]:
    """A calendar date to the type F/G fields; a date the calendar does not have is refused (it
    would decode as no date, ``timetypes.calendar_date``)."""
    try:
        date(year, month, day)
    except ValueError as error:
        raise DecodeError(f"{year:04d}-{month:02d}-{day:02d}: {error}") from None
    return {**_year_fields(year), "month": month, "day": day}


def _signed(data: bytes) -> int:
    """The data field is a signed integer (Type B); the date's bits go in as they are."""
    return int.from_bytes(data, "little", signed=True)


def _type_g(text: str) -> int:
    year, month, day = (int(part) for part in text.split("-"))
    return _signed(TypeG.build(_date_fields(year, month, day)))


def _type_f(text: str, summer_time: bool) -> int:
    date, _, time = text.partition("T")
    year, month, day = (int(part) for part in date.split("-"))
    hour, minute = (int(part) for part in time.split(":"))
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise DecodeError(f"{text}: no time of day")
    fields = {
        **_date_fields(year, month, day),
        "summer_time": summer_time,
        "hundred_year": 0,
        "hour": hour,
        "invalid": False,
        "reserved": False,
        "minute": minute,
    }
    return _signed(TypeF.build(fields))


#: A record to build: exact wire-level spec, a DataRecord (coded int32), or (DataRecord, coding).
RecordInput = RecordSpec | DataRecord | tuple[DataRecord, str]


def _spec(record: RecordInput) -> RecordSpec:
    if isinstance(record, RecordSpec):
        return record
    if isinstance(record, tuple):
        return encode_record(*record)
    return encode_record(record)


# --- Frames ------------------------------------------------------------------------------------------


def build_user_data(
    records: Sequence[RecordInput],
    manufacturer_data: bytes | None = None,
    more_records_follow: bool = False,
) -> bytes:
    """The variable data records, then DIF 0Fh/1Fh and manufacturer data when given."""
    body = b"".join(build_record(_spec(record)) for record in records)
    if manufacturer_data is not None or more_records_follow:
        marker = DIF_MORE_RECORDS_FOLLOW if more_records_follow else DIF_MANUFACTURER_DATA
        body += bytes((marker,)) + (manufacturer_data or b"")
    return body


def build_rsp_ud(
    address: int,
    identification: str,
    manufacturer: str,
    version: int,
    medium: str,
    access_no: int,
    status: int,
    records: Sequence[RecordInput],
    *,
    signature: int = 0,
    manufacturer_data: bytes | None = None,
    more_records_follow: bool = False,
    c_field: int = link.RSP_UD,
) -> bytes:
    """A slave's RSP_UD long frame, CI = 72h (long header), with ``records``.

    Each record is a :class:`RecordSpec` (exactly what goes on the wire), a :class:`DataRecord`
    (coded as a 32-bit integer), or a ``(DataRecord, coding)`` pair, coding being one of ``int8``,
    ``int16``, ``int24``, ``int32``, ``int48``, ``int64``, ``real32``, ``bcd2`` .. ``bcd12``.
    Example: ``build_rsp_ud(1, "12345678", "ELS", 7, "water", 0x55, 0,
    [(DataRecord("volume", "m3", 12.345), "bcd8")])``.
    """
    header = bytes(
        LongHeader.build(
            {
                "identification": identification,
                "manufacturer": manufacturer,
                "version": version,
                "medium": medium,
                "access_no": access_no,
                "status": status,
                "signature": signature,
            }
        )
    )
    body = build_user_data(records, manufacturer_data, more_records_follow)
    return link.build_long(c_field, address, CI_LONG_HEADER, header + body)


def build_ack() -> bytes:
    """The single character E5h."""
    return link.build_single_character()


def build_snd_ud_select(
    identification: str = "FFFFFFFF",
    manufacturer: str | None = None,
    version: int | None = None,
    medium: str | None = None,
    *,
    fcb: bool = False,
) -> bytes:
    """SND_UD to address FDh with CI = 52h: select the slave with this secondary address.

    ``F`` digits in ``identification`` and ``None`` elsewhere are wildcards (Fh nibbles, FFh bytes).
    """
    user_data = bytes(
        SecondaryAddress.build(
            {"identification": identification, "manufacturer": manufacturer, "version": version, "medium": medium}
        )
    )
    return link.build_long(link.SND_UD | (link.FCB if fcb else 0), link.ADDRESS_NETWORK_LAYER, CI_SELECTION, user_data)


__all__ = ["RecordSpec", "build_record", "build_rsp_ud", "build_snd_ud_select", "encode_record"]
