"""The utility's time zone (collector migration 0020, ``utility_timezone()``), for what follows the
local clock: VEE's hour-of-week profiles, and the days detection learns a household's nights and
weekends by."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg


def utility_zone(conn: psycopg.Connection[Any]) -> ZoneInfo:
    row = conn.execute("SELECT utility_timezone()").fetchone()
    value = (row.get("utility_timezone") if isinstance(row, dict) else row[0]) if row else None
    return ZoneInfo(str(value)) if value else ZoneInfo("UTC")


def standard_offset(zone: ZoneInfo) -> timedelta:
    """The zone's offset without daylight saving: the smaller of its January and July offsets."""
    offsets = [datetime(2026, month, 1, tzinfo=zone).utcoffset() or timedelta(0) for month in (1, 7)]
    return min(offsets)


def day_offset_s(zone: ZoneInfo, interval: timedelta) -> int:
    """Where a block's days begin (``SeriesBlock.day_offset_s``): the zone's standard offset, to the
    nearest whole interval (hourly reads put Adelaide's +9:30 at +10:00, a day's edge half an hour
    out, which the nights either side of it do not notice). Daylight saving time is left out: in
    summer the edge falls at 01:00 local, still in the night."""
    step = interval.total_seconds()
    return int(round(standard_offset(zone).total_seconds() / step) * step)
