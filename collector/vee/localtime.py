"""Epoch seconds to the utility's local clock and back, vectorised, for what follows that clock: a
household's hours of the week, and a daily meter read at 06:00 local in winter and in summer.

"Local seconds" are the epoch seconds a UTC clock would show at the same wall-clock time (06:00
local is 06:00 in local seconds), so local times of day and hours of the week are plain arithmetic.
Offsets are looked up once per hour of the span, not per reading (a month of a fleet's reads spans
some 750 hours).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import numpy as np

from collector.vee.series import F64

_HOUR_S = 3600.0


def _offsets_s(ts: F64, zone: tzinfo) -> F64:
    """``zone``'s UTC offset (seconds) at each of the instants ``ts``."""
    if zone is UTC or ts.size == 0:
        return np.zeros(ts.shape)
    utc_hour = np.floor(ts / _HOUR_S).astype(np.int64)
    first, last = int(utc_hour.min()), int(utc_hour.max())
    table = np.array(
        [_offset_s(datetime.fromtimestamp(h * _HOUR_S, UTC).astimezone(zone)) for h in range(first, last + 1)]
    )
    return table[utc_hour - first]


def _offset_s(local: datetime) -> float:
    offset = local.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def to_local(ts: F64, zone: tzinfo) -> F64:
    """Local seconds of the instants ``ts``."""
    return ts + _offsets_s(ts, zone)


def to_utc(local: F64, zone: tzinfo) -> F64:
    """The instants showing the local seconds ``local`` (a wall-clock time the clock skips, in the
    hour it goes forward, is taken with the offset after the change)."""
    guess = local - _offsets_s(local, zone)
    return local - _offsets_s(guess, zone)
