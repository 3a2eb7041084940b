"""Date and time types F, G, I and J (EN 13757-3:2018 Annex A, Tables A.5 to A.8).

Each is a little-endian bit field; the Constructs below list the fields most significant first, as
the tables number them from the top. ``format_*`` turn parsed fields into ISO 8601 text.

Types F and I (Tables A.5 and A.7) hold the meter's local wall time, with no offset from UTC: the
text is that wall time, as the meter's clock showed it. Their SU bit says whether the meter was
keeping summer time; on the autumn change day the repeated hour (01:30 in summer time, then 01:30
in standard time, an hour later) is told apart only by it, so the decoded record carries it as
``summer_time`` beside the value (``summer_time_*`` below; ``None`` where the time is invalid).

Annex A also lets a date or time name every period instead of one (day 0 "every day", month 15
"every month", year 127 "every year", hour 31, minute and second 63 "every ..."), for a due date
that recurs. Such a field, and any other out of range (month 13, 30 February, a year above 99), is
no point in time: the value is ``None``, never a date that does not exist, on both the Construct
and the byte paths.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from construct import BitsInteger, BitStruct, ByteSwapped, Flag, Nibble

#: Type G, date (16 bits).
TypeG = ByteSwapped(
    BitStruct(
        "year_high" / Nibble,
        "month" / Nibble,
        "year_low" / BitsInteger(3),
        "day" / BitsInteger(5),
    )
)

#: Type F, date and time (32 bits).
TypeF = ByteSwapped(
    BitStruct(
        "year_high" / Nibble,
        "month" / Nibble,
        "year_low" / BitsInteger(3),
        "day" / BitsInteger(5),
        "summer_time" / Flag,
        "hundred_year" / BitsInteger(2),
        "hour" / BitsInteger(5),
        "invalid" / Flag,
        "reserved" / Flag,
        "minute" / BitsInteger(6),
    )
)

#: Type I, date and time with seconds (48 bits).
TypeI = ByteSwapped(
    BitStruct(
        "dst_deviation" / BitsInteger(2),
        "week" / BitsInteger(6),
        "year_high" / Nibble,
        "month" / Nibble,
        "year_low" / BitsInteger(3),
        "day" / BitsInteger(5),
        "day_of_week" / BitsInteger(3),
        "hour" / BitsInteger(5),
        "invalid" / Flag,
        "summer_time" / Flag,
        "minute" / BitsInteger(6),
        "dst_sign" / Flag,
        "leap_year" / Flag,
        "second" / BitsInteger(6),
    )
)

#: Type J, time of day (24 bits).
TypeJ = ByteSwapped(
    BitStruct(
        "reserved_hour" / BitsInteger(3),
        "hour" / BitsInteger(5),
        "reserved_minute" / BitsInteger(2),
        "minute" / BitsInteger(6),
        "reserved_second" / BitsInteger(2),
        "second" / BitsInteger(6),
    )
)


def full_year(year: int, hundred_year: int = 0) -> int:
    """Years 0..99 count from 1900 plus the hundred-year bits; with those bits 0 (as most meters
    send them) years up to 80 are read as 20xx, the rule EN 13757-3 keeps for compatibility."""
    if hundred_year:
        return 1900 + 100 * hundred_year + year
    return 2000 + year if year <= 80 else 1900 + year


def calendar_date(year: int, month: int, day: int, hundred_year: int = 0) -> str | None:
    """``YYYY-MM-DD`` of a type F, G or I date's fields (year 0..99); ``None`` for a wildcard
    (Annex A: day 0, month 15, year 127) or any date the calendar does not have."""
    if year > 99:
        return None
    full = full_year(year, hundred_year)
    try:
        date(full, month, day)
    except ValueError:
        return None
    return f"{full:04d}-{month:02d}-{day:02d}"


def clock_time(hour: int, minute: int, second: int | None = None) -> str | None:
    """``HH:MM`` (or ``HH:MM:SS``); ``None`` for a wildcard (hour 31, minute or second 63) or any
    time out of range."""
    if hour > 23 or minute > 59 or (second is not None and second > 59):
        return None
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second is not None else "")


def _joined(day: str | None, time: str | None) -> str | None:
    return None if day is None or time is None else f"{day}T{time}"


def format_date(fields: Any) -> str | None:
    return calendar_date((fields.year_high << 3) | fields.year_low, fields.month, fields.day)


def format_datetime(fields: Any) -> str | None:
    """Type F: ``YYYY-MM-DDTHH:MM``; ``None`` when the meter marks the time invalid (IV bit)."""
    if fields.invalid:
        return None
    year = (fields.year_high << 3) | fields.year_low
    return _joined(
        calendar_date(year, fields.month, fields.day, fields.hundred_year), clock_time(fields.hour, fields.minute)
    )


def format_datetime_seconds(fields: Any) -> str | None:
    """Type I: ``YYYY-MM-DDTHH:MM:SS``; ``None`` when marked invalid."""
    if fields.invalid:
        return None
    year = (fields.year_high << 3) | fields.year_low
    return _joined(calendar_date(year, fields.month, fields.day), clock_time(fields.hour, fields.minute, fields.second))


def format_summer_time(fields: Any) -> bool | None:
    """Types F and I: the SU bit (summer time); ``None`` when the time is marked invalid or is no
    point in time (a wildcard): no SU bit beside no value."""
    parsed = format_datetime_seconds(fields) if hasattr(fields, "second") else format_datetime(fields)
    return None if parsed is None else bool(fields.summer_time)


def format_time(fields: Any) -> str | None:
    return clock_time(fields.hour, fields.minute, fields.second)


# --- The same conversions straight from bytes, for the fast path (checked against the above) -------


def date_g(data: bytes) -> str | None:
    b0, b1 = data[0], data[1]
    return calendar_date(((b1 >> 4) << 3) | (b0 >> 5), b1 & 0x0F, b0 & 0x1F)


def datetime_f(data: bytes) -> str | None:
    b0, b1, b2, b3 = data[0], data[1], data[2], data[3]
    if b0 & 0x80:
        return None
    day = calendar_date(((b3 >> 4) << 3) | (b2 >> 5), b3 & 0x0F, b2 & 0x1F, (b1 >> 5) & 0x03)
    return _joined(day, clock_time(b1 & 0x1F, b0 & 0x3F))


def datetime_i(data: bytes) -> str | None:
    if data[1] & 0x80:
        return None
    day = calendar_date(((data[4] >> 4) << 3) | (data[3] >> 5), data[4] & 0x0F, data[3] & 0x1F)
    return _joined(day, clock_time(data[2] & 0x1F, data[1] & 0x3F, data[0] & 0x3F))


def summer_time_f(data: bytes) -> bool | None:
    return None if datetime_f(data) is None else bool(data[1] & 0x80)


def summer_time_i(data: bytes) -> bool | None:
    return None if datetime_i(data) is None else bool(data[1] & 0x40)


def time_j(data: bytes) -> str | None:
    return clock_time(data[2] & 0x1F, data[1] & 0x3F, data[0] & 0x3F)
