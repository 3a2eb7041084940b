"""Date and time types F, G, I and J (EN 13757-3:2018 Annex A, Tables A.5 to A.8).

Each is a little-endian bit field; the Constructs below list the fields most significant first, as
the tables number them from the top. ``format_*`` turn parsed fields into ISO 8601 text.

Types F and I (Tables A.5 and A.7) hold the meter's local wall time, with no offset from UTC: the
text is that wall time, as the meter's clock showed it. Their SU bit says whether the meter was
keeping summer time; on the autumn change day the repeated hour (01:30 in summer time, then 01:30
in standard time, an hour later) is told apart only by it, so the decoded record carries it as
``summer_time`` beside the value (``summer_time_*`` below; ``None`` where the time is invalid).
"""

from __future__ import annotations

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


def format_date(fields: Any) -> str:
    year = full_year((fields.year_high << 3) | fields.year_low)
    return f"{year:04d}-{fields.month:02d}-{fields.day:02d}"


def format_datetime(fields: Any) -> str | None:
    """Type F: ``YYYY-MM-DDTHH:MM``; ``None`` when the meter marks the time invalid (IV bit)."""
    if fields.invalid:
        return None
    year = full_year((fields.year_high << 3) | fields.year_low, fields.hundred_year)
    return f"{year:04d}-{fields.month:02d}-{fields.day:02d}T{fields.hour:02d}:{fields.minute:02d}"


def format_datetime_seconds(fields: Any) -> str | None:
    """Type I: ``YYYY-MM-DDTHH:MM:SS``; ``None`` when marked invalid."""
    if fields.invalid:
        return None
    year = full_year((fields.year_high << 3) | fields.year_low)
    return f"{year:04d}-{fields.month:02d}-{fields.day:02d}T{fields.hour:02d}:{fields.minute:02d}:{fields.second:02d}"


def format_summer_time(fields: Any) -> bool | None:
    """Types F and I: the SU bit (summer time); ``None`` when the time is marked invalid."""
    return None if fields.invalid else bool(fields.summer_time)


def format_time(fields: Any) -> str:
    return f"{fields.hour:02d}:{fields.minute:02d}:{fields.second:02d}"


# --- The same conversions straight from bytes, for the fast path (checked against the above) -------


def date_g(data: bytes) -> str:
    b0, b1 = data[0], data[1]
    year = full_year(((b1 >> 4) << 3) | (b0 >> 5))
    return f"{year:04d}-{b1 & 0x0F:02d}-{b0 & 0x1F:02d}"


def datetime_f(data: bytes) -> str | None:
    b0, b1, b2, b3 = data[0], data[1], data[2], data[3]
    if b0 & 0x80:
        return None
    year = full_year(((b3 >> 4) << 3) | (b2 >> 5), (b1 >> 5) & 0x03)
    return f"{year:04d}-{b3 & 0x0F:02d}-{b2 & 0x1F:02d}T{b1 & 0x1F:02d}:{b0 & 0x3F:02d}"


def datetime_i(data: bytes) -> str | None:
    if data[1] & 0x80:
        return None
    year = full_year(((data[4] >> 4) << 3) | (data[3] >> 5))
    return (
        f"{year:04d}-{data[4] & 0x0F:02d}-{data[3] & 0x1F:02d}"
        f"T{data[2] & 0x1F:02d}:{data[1] & 0x3F:02d}:{data[0] & 0x3F:02d}"
    )


def summer_time_f(data: bytes) -> bool | None:
    return None if data[0] & 0x80 else bool(data[1] & 0x80)


def summer_time_i(data: bytes) -> bool | None:
    return None if data[1] & 0x80 else bool(data[1] & 0x40)


def time_j(data: bytes) -> str:
    return f"{data[2] & 0x1F:02d}:{data[1] & 0x3F:02d}:{data[0] & 0x3F:02d}"
