"""Estimation: readings for the expected times inside a gap, so consumption and bills have no holes.

- Short gaps (up to ``linear_max_gap_s``): linear on the register between the reads either side.
- Long gaps: the meter's own profile, i.e. its mean use per hour of the week over the series
  loaded (``profile_lookback_days`` before the period), shaped to fit the register difference
  exactly, so the estimates add up to what the meter actually measured across the gap. Hours of
  the week are the utility's local ones: a household's 07:00 shower stays at 07:00 across a
  change to or from daylight saving time.
- Never across a backward step (replacement, rollover, reverse flow, unexplained): the two reads
  do not belong to one register history, so the gap is left for a person.

All gaps of all meters at once: slots are laid out with ``np.repeat`` and per-gap sums with
``np.add.reduceat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import numpy as np
import numpy.typing as npt

from collector.vee.config import VeeConfig
from collector.vee.rules import Validation
from collector.vee.series import F64, I64, Series

HOURS_PER_WEEK = 168


@dataclass(frozen=True)
class Estimates:
    meter: I64
    ts: F64  # epoch seconds, on the meter's own interval grid (collector/vee/intervals.py)
    volume: F64  # rounded to the register's resolution
    method: npt.NDArray[np.str_]  # "linear" or "profile"
    gap_start: F64
    gap_end: F64
    not_estimated: npt.NDArray[np.intp]  # closing reads of gaps left alone (across a step, or too long)

    def __len__(self) -> int:
        return len(self.ts)


def _hour_of_week(ts: F64, zone: tzinfo = UTC) -> I64:
    """The local hour of the week (Monday 00:00 is 0) that the interval closing at ``ts`` lies in."""
    # ts - 1 s: a read at 10:00 closes the hour that began at 09:00.
    utc_hour = np.floor((ts - 1) / 3600).astype(np.int64)
    local_s = (ts - 1) + _utc_offsets_s(utc_hour, zone)
    # The epoch began on a Thursday; +72 h makes Monday 00:00 hour 0.
    return ((np.floor(local_s / 3600).astype(np.int64) + 72) % HOURS_PER_WEEK).astype(np.int64)


def _utc_offsets_s(utc_hour: I64, zone: tzinfo) -> F64:
    """``zone``'s UTC offset (seconds) in each UTC hour: looked up once per hour of the span, not
    per reading (a month of a fleet's reads spans some 750 hours)."""
    if zone is UTC or utc_hour.size == 0:
        return np.zeros(utc_hour.shape)
    first, last = int(utc_hour.min()), int(utc_hour.max())
    table = np.array(
        [_offset_s(datetime.fromtimestamp(h * 3600, UTC).astimezone(zone)) for h in range(first, last + 1)]
    )
    return table[utc_hour - first]


def _offset_s(local: datetime) -> float:
    offset = local.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def meter_profiles(series: Series, validation: Validation, config: VeeConfig, zone: tzinfo = UTC) -> F64:
    """Mean m³/h per (meter, local hour of week) over the series' normal intervals; NaN where unseen."""
    normal = np.isfinite(validation.interval_consumption) & (validation.step_kind == "") & ~validation.masks["gap"]
    normal &= validation.gap_s > 0
    idx = np.flatnonzero(normal)
    key = series.meter[idx] * HOURS_PER_WEEK + _hour_of_week(series.ts[idx], zone)
    size = len(series.meter_ids) * HOURS_PER_WEEK
    rate = validation.interval_consumption[idx] / (validation.gap_s[idx] / 3600)
    total = np.bincount(key, weights=rate, minlength=size)
    count = np.bincount(key, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = total / count
    return profile.reshape(len(series.meter_ids), HOURS_PER_WEEK)


def estimate(
    series: Series, validation: Validation, config: VeeConfig, zone: tzinfo = UTC, *, since: float | None = None
) -> Estimates:
    """Estimates for the gaps whose closing read is at or after ``since`` (every gap when None), at
    every slot of those gaps, those before ``since`` too; ``zone``: the utility's, whose hours of the
    week the profiles follow.

    A round passes its period's start: the gaps of the 28 days of look-back were estimated by the
    rounds whose periods they closed in (before, each round estimated all of them again and kept its
    own two days, 93% thrown away). A gap closing in the period is estimated whole, however far back
    it opened: no later round estimates it (its closing read is behind their periods), and keeping
    only the slots from ``since`` on left an hourly meter silent for three days with 46 of its 70
    missing hours estimated and 25 hours of water in one interval, for good. (The slots before
    ``since`` hold no reads of the meter, or the gap would not be one; the insert keeps any that
    came meanwhile.)"""
    closing = validation.flagged("gap")
    if since is not None:
        closing = closing[series.ts[closing] >= since]
    crosses_step = validation.step_kind[closing] != ""
    too_long = validation.gap_s[closing] > config.max_estimated_gap_s
    # a read whose time VEE calls wrong (ahead of the clock, or long before it arrived) anchors no
    # estimate: a meter's clock running fast had the gap before it estimated up to its false time
    # (estimates after the round's now, a whole invented day once that time had come)
    untimely = validation.masks["future_timestamp"] | validation.masks["far_past_timestamp"]
    badly_anchored = untimely[closing] | untimely[closing - 1]
    skip = crosses_step | too_long | badly_anchored
    not_estimated = closing[skip]
    closing = closing[~skip]
    # the meter's own slots: a daily meter's missing day is one estimate at its reading hour
    interval = validation.interval_s[series.meter[closing]]
    phase = validation.phase_s[series.meter[closing]]
    t0, t1 = series.ts[closing - 1], series.ts[closing]
    v0, v1 = series.volume[closing - 1], series.volume[closing]
    first = np.floor((t0 - phase) / interval) + 1
    counts = np.maximum(np.ceil((t1 - phase) / interval) - first, 0).astype(np.int64)
    keep = counts > 0
    closing, t0, t1, v0, v1, first, counts, interval, phase = (
        a[keep] for a in (closing, t0, t1, v0, v1, first, counts, interval, phase)
    )
    gaps = len(closing)
    gap_of_slot = np.repeat(np.arange(gaps), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    slot_ts = (first[gap_of_slot] + offset) * interval[gap_of_slot] + phase[gap_of_slot]
    fraction = (slot_ts - t0[gap_of_slot]) / (t1 - t0)[gap_of_slot]

    long_gap = (t1 - t0) > config.linear_max_gap_s
    method = np.where(long_gap[gap_of_slot], "profile", "linear").astype("<U7")
    if long_gap.any():
        fraction, used_profile = _profile_fractions(
            series, validation, config, closing, t0, t1, counts, gap_of_slot, slot_ts, fraction, long_gap, zone
        )
        method = np.where(long_gap[gap_of_slot] & used_profile[gap_of_slot], "profile", "linear").astype("<U7")
    volume = np.round(v0[gap_of_slot] + (v1 - v0)[gap_of_slot] * fraction, config.estimate_decimals)
    # rounded to litres, an estimate on a finer register can fall outside the reads either side of
    # its gap (100.000 between 100.0001 and 100.0004): the register would step back into the gap
    volume = np.clip(volume, np.minimum(v0, v1)[gap_of_slot], np.maximum(v0, v1)[gap_of_slot])
    return Estimates(
        meter=series.meter[closing][gap_of_slot],
        ts=slot_ts,
        volume=volume,
        method=method,
        gap_start=t0[gap_of_slot],
        gap_end=t1[gap_of_slot],
        not_estimated=not_estimated,
    )


def _profile_fractions(
    series: Series,
    validation: Validation,
    config: VeeConfig,
    closing: npt.NDArray[np.intp],
    t0: F64,
    t1: F64,
    counts: I64,
    gap_of_slot: I64,
    slot_ts: F64,
    linear_fraction: F64,
    long_gap: npt.NDArray[np.bool_],
    zone: tzinfo,
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Cumulative share of the gap's use at each slot, by the meter's profile; linear where it has none."""
    profiles = meter_profiles(series, validation, config, zone)
    # Sub-intervals per gap: (t0, s1], (s1, s2], …, (s_m, t1]: the slots plus the closing read.
    parts = counts + 1
    gap_of_part = np.repeat(np.arange(len(closing)), parts)
    ends = np.empty(int(parts.sum()))
    part_start = np.cumsum(parts) - parts
    slot_in_gap = np.arange(len(slot_ts)) - np.repeat(np.cumsum(counts) - counts, counts)
    slot_positions = np.repeat(part_start, counts) + slot_in_gap
    ends[slot_positions] = slot_ts
    ends[part_start + counts] = t1
    starts = np.empty_like(ends)
    starts[1:] = ends[:-1]
    starts[part_start] = t0
    meter = series.meter[closing][gap_of_part]
    rate = profiles[meter, _hour_of_week(ends, zone)]
    weight = np.nan_to_num(rate, nan=0.0).clip(min=0) * (ends - starts) / 3600
    totals = np.add.reduceat(weight, part_start)
    cumulative = np.cumsum(weight)
    before = np.repeat(cumulative[part_start] - weight[part_start], parts)
    within = cumulative - before
    usable = long_gap & (totals > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = within / totals[gap_of_part]
    fraction = np.where(usable[gap_of_slot], share[slot_positions], linear_fraction)
    return fraction, usable
