"""The utility's time zone (collector migration 0020, ``utility_timezone()``), for what follows the
local clock: VEE's hour-of-week profiles, and the days detection learns a household's nights and
weekends by."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import tuple_row


def utility_zone_name(conn: psycopg.Connection[Any]) -> str:
    """The zone's IANA name, whatever rows the connection makes (the server's are dicts)."""
    row = conn.cursor(row_factory=tuple_row).execute("SELECT utility_timezone()").fetchone()
    return str(row[0]) if row and row[0] else "UTC"


def utility_zone(conn: psycopg.Connection[Any]) -> ZoneInfo:
    """The zone; ZoneInfoNotFoundError if PostgreSQL knows a name this Python's tzdata lacks."""
    return ZoneInfo(utility_zone_name(conn))


def _january_and_july_offsets(zone: ZoneInfo) -> list[timedelta]:
    return [datetime(2026, month, 1, tzinfo=zone).utcoffset() or timedelta(0) for month in (1, 7)]


def standard_offset(zone: ZoneInfo) -> timedelta:
    """The zone's offset without daylight saving: the smaller of its January and July offsets."""
    return min(_january_and_july_offsets(zone))


def daylight_saving_shift(zone: ZoneInfo) -> timedelta:
    """How far the zone's clocks go forward in summer (0 without daylight saving): an hour in most
    zones, 30 minutes on Lord Howe Island (+10:30, summer +11:00)."""
    offsets = _january_and_july_offsets(zone)
    return max(offsets) - min(offsets)


def day_offset_s(zone: ZoneInfo, interval: timedelta) -> int:
    """Where a block's days begin (``SeriesBlock.day_offset_s``): the zone's standard offset, to the
    nearest whole interval (hourly reads put Adelaide's +9:30 at +10:00, a day's edge half an hour
    out, which the nights either side of it do not notice). Daylight saving time is left out: in
    summer the edge falls at 01:00 local, still in the night."""
    step = interval.total_seconds()
    return int(round(standard_offset(zone).total_seconds() / step) * step)
