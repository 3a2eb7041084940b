"""Estimation: readings for the expected times inside a gap, so consumption and bills have no holes.

- Short gaps (up to ``linear_max_gap_s``): linear on the register between the reads either side.
- Long gaps: the meter's own profile, i.e. its mean use per hour of the week over the series
  loaded (``profile_lookback_days`` before the period), learned from measured water only (never
  from an interval either of whose reads is an estimate), shaped to fit the register difference
  exactly, so the estimates add up to what the meter actually measured across the gap. Hours of
  the week are the utility's local ones: a household's 07:00 shower stays at 07:00 across a
  change to or from daylight saving time. A read and a slot are keyed by the slot they stand for
  on the meter's grid, an hour the profile has not seen takes the meter's average rate, and no
  part of a gap takes water faster than the meter's maximum flow, or than the 5 % over it that
  ``over_max_flow`` allows where the gap's water needs that (a gap the rule flags is linear).
- Never across a backward step (replacement, rollover, reverse flow, unexplained): the two reads
  do not belong to one register history, so the gap is left for a person.

All gaps of all meters at once: slots are laid out with ``np.repeat`` and per-gap sums with
``np.add.reduceat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo

import numpy as np
import numpy.typing as npt

from collector.detection.series import LATE_READ_SHARE
from collector.vee.config import VeeConfig
from collector.vee.localtime import to_local, to_utc
from collector.vee.rules import Validation
from collector.vee.series import F64, I64, B, Series

HOURS_PER_WEEK = 168
_HOUR_S = 3600.0


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


def _slot_hour_of_week(ts: F64, interval: F64, phase: F64, zone: tzinfo) -> I64:
    """The local hour of the week (Monday 00:00 is 0) of the interval closing at the slot a read at
    ``ts`` stands for: the nearest point of its meter's grid (``interval`` and ``phase`` per
    reading, as :mod:`collector.vee.intervals` finds them). A daily meter's read the gateway stamped
    at 06:00:07 and VEE's estimate at 06:00 are one slot: keyed by the read's own time, the profile
    knew only the hour after 06:00 and weighed every estimate's hour zero, so a gap's estimates
    showed no use at all and the whole gap's water lay in its last 7 seconds."""
    longer = interval > _HOUR_S
    # up to an hour the grid is the epoch's; over it, the local clock's (collector.vee.intervals)
    on_grid = np.round(ts / interval) * interval
    local = np.where(
        longer,
        np.round((to_local(ts, zone) - phase) / interval) * interval + phase,
        to_local(on_grid - 1, zone) + 1,
    )
    # -1 s: a read at 10:00 closes the hour that began at 09:00. The epoch began on a Thursday;
    # +72 h makes Monday 00:00 hour 0.
    return ((np.floor((local - 1) / _HOUR_S).astype(np.int64) + 72) % HOURS_PER_WEEK).astype(np.int64)


def meter_profiles(series: Series, validation: Validation, config: VeeConfig, zone: tzinfo = UTC) -> F64:
    """Mean m³/h per (meter, local hour of week) over the series' normal intervals of measured water;
    NaN where unseen.

    Measured water: an interval neither of whose reads is VEE's estimate (the meter's own reads, a
    person's edits and substitutions). An interval either of whose reads is an estimate is
    estimated water, as billing counts it (``estimated_m3``): learned from, a linear estimate of a
    6-hour morning gap put Monday's busy hour at 47.5 L/h (three measured 60 L and the estimate's
    10 L) and 2.5 L/h into hours the household used nothing in, and the next gaps were shaped by it."""
    measured = series.quality != "estimated"
    normal = np.isfinite(validation.interval_consumption) & (validation.step_kind == "") & ~validation.masks["gap"]
    normal &= (validation.gap_s > 0) & measured
    normal[1:] &= measured[:-1]  # the read before (of the same meter, or the interval is not finite)
    idx = np.flatnonzero(normal)
    meter = series.meter[idx]
    hour = _slot_hour_of_week(series.ts[idx], validation.read_interval_s[idx], validation.read_phase_s[idx], zone)
    key = meter * HOURS_PER_WEEK + hour
    size = len(series.meter_ids) * HOURS_PER_WEEK
    rate = validation.interval_consumption[idx] / (validation.gap_s[idx] / 3600)
    total = np.bincount(key, weights=rate, minlength=size)
    count = np.bincount(key, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = total / count
    return profile.reshape(len(series.meter_ids), HOURS_PER_WEEK)


def estimate(
    series: Series,
    validation: Validation,
    config: VeeConfig,
    zone: tzinfo = UTC,
    *,
    since: float | None = None,
    whole: B | None = None,
) -> Estimates:
    """Estimates for the gaps whose closing read is at or after ``since`` (every gap when None), at
    every slot of those gaps, those before ``since`` too; ``zone``: the utility's, whose hours of the
    week the profiles follow (and the one :func:`collector.vee.rules.validate` was given: a daily
    meter's slot grid is on its clock).

    A round passes its period's start: the gaps of the 28 days of look-back were estimated by the
    rounds whose periods they closed in (before, each round estimated all of them again and kept its
    own two days, 93% thrown away). A gap closing in the period is estimated whole, however far back
    it opened: no later round estimates it (its closing read is behind their periods), and keeping
    only the slots from ``since`` on left an hourly meter silent for three days with 46 of its 70
    missing hours estimated and 25 hours of water in one interval, for good. (The slots before
    ``since`` hold no reads of the meter, or the gap would not be one; the insert keeps any that
    came meanwhile.)

    ``whole``, per meter code: the meters whose gaps are all estimated, whenever they closed: those
    whose interval is found for the first time, whose earlier steps no round could judge."""
    # (a gap whose estimates stand is flagged, and not estimated again)
    closing = np.flatnonzero(validation.masks["gap"] & ~validation.filled_gap)
    if since is not None:
        anew = np.zeros(len(series.meter_ids), bool) if whole is None else whole
        closing = closing[(series.ts[closing] >= since) | anew[series.meter[closing]]]
    skip = left_alone(validation, config, closing)
    not_estimated = closing[skip]
    closing = closing[~skip]
    # the meter's own slots at the time: a daily meter's missing day is one estimate at its reading hour
    interval = validation.read_interval_s[closing]
    phase = validation.read_phase_s[closing]
    t0, t1 = series.ts[closing - 1], series.ts[closing]
    v0, v1 = series.volume[closing - 1], series.volume[closing]
    counts, slot_ts = gap_slots(t0, t1, interval, phase, zone)
    keep = counts > 0
    closing, counts = closing[keep], counts[keep]
    t0, t1, v0, v1 = (a[keep] for a in (t0, t1, v0, v1))
    gaps = len(closing)
    gap_of_slot = np.repeat(np.arange(gaps), counts)
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


def left_alone(validation: Validation, config: VeeConfig, closing: npt.NDArray[np.intp]) -> B:
    """Per gap closing at ``closing`` (reads of the validated series, each a gap's closing read,
    with its opening read before it), whether the rules leave it for a person, unestimated: across a
    backward register step, longer than ``max_estimated_gap_s``, or beside a read whose time is wrong."""
    crosses_step = validation.step_kind[closing] != ""
    too_long = validation.gap_s[closing] > config.max_estimated_gap_s
    # a read whose time VEE calls wrong (ahead of the clock, or long before it arrived) anchors no
    # estimate: a meter's clock running fast had the gap before it estimated up to its false time
    # (estimates after the round's now, a whole invented day once that time had come)
    untimely = validation.masks["future_timestamp"] | validation.masks["far_past_timestamp"]
    badly_anchored = untimely[closing] | untimely[closing - 1]
    result: B = crosses_step | too_long | badly_anchored
    return result


def gap_slots(t0: F64, t1: F64, interval: F64, phase: F64, zone: tzinfo) -> tuple[I64, F64]:
    """The slots strictly between the ones the reads at each gap's ends (``t0``, ``t1``) stand for,
    on its meter's grid: how many per gap, and their times, gap after gap. The slot a measured read
    stands for gets no estimate (:func:`slot_of`)."""
    longer = interval > _HOUR_S
    first = slot_of(t0, interval, phase, zone) + 1
    stop = slot_of(t1, interval, phase, zone)
    counts = np.maximum(stop - first, 0).astype(np.int64)
    gap_of_slot = np.repeat(np.arange(len(t0)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    local = (first[gap_of_slot] + offset) * interval[gap_of_slot] + phase[gap_of_slot]
    slot_ts = np.where(longer[gap_of_slot], to_utc(local, zone), local)
    # a two-hourly grid shifted by a clock change can meet a gap's end: no slot on or beyond a read
    inside = (slot_ts > t0[gap_of_slot]) & (slot_ts < t1[gap_of_slot])
    return np.bincount(gap_of_slot[inside], minlength=len(t0)).astype(np.int64), slot_ts[inside]


def slot_of(ts: F64, interval: F64, phase: F64, zone: tzinfo = UTC) -> F64:
    """The number, on the grid of ``interval`` and ``phase`` (per reading, as
    :mod:`collector.vee.intervals` finds them), of the slot a read at ``ts`` stands for.

    Up to an hour (the epoch's grid): the first slot at or after the read, or the one up to
    :data:`~collector.detection.series.LATE_READ_SHARE` (a twentieth) of the interval before it, as
    detection places reads: a gateway polls a little before each slot (up to its ``jitter``, a tenth of
    the interval by default) and its stamp may fall seconds after it (10:00:07), not minutes. Before, a read 7 s past
    the hour had the slot on the hour before it as the gap's: a round wrote 3 estimates for 2
    missing reads, the last at 11:00:00, 7 s before the meter's read at 11:00:07, and a read polled 4
    minutes before 06:00 had an estimate at 06:00 after it. Over an hour (the local clock's grid, at
    the meter's reading hour): the nearest slot, so a daily meter's read at 06:00:07 is its 06:00
    read, and one read at 06:00 local in summer is not followed an hour later by an estimate on the
    winter's grid (07:00 local: four estimates for three missing days)."""
    longer = interval > _HOUR_S
    local = np.where(longer, to_local(ts, zone), ts)
    late = interval * LATE_READ_SHARE
    return np.where(longer, np.round((local - phase) / interval), np.ceil((local - late - phase) / interval))


def _within_max_flow(share: F64, room: F64, part_start: I64, gap_of_part: I64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Each gap's ``share`` per part (summing to 1) held to at most ``room`` (the share of the gap's
    rise the meter passes at its maximum flow in the part's time), and, per gap, whether it fits.

    A profile puts a gap's water into the hours the meter is busiest: a 24-hour gap whose register
    rose 12 m³ went all into 06:00-07:00 on a 5 m³/h meter, and VEE does not flag its own estimates.
    The excess over each full part is spread over the others in proportion to the room they have
    left, which fills none of them past its own (one step, no iteration); a gap whose rise exceeds
    its whole room does not fit."""
    capped = np.minimum(share, room)
    left = room - capped
    excess = np.add.reduceat(np.nan_to_num(share - capped), part_start)
    free = np.add.reduceat(left, part_start)
    fits = excess <= free + 1e-9  # (shares of 1: a rise of exactly the room fits, whatever float says)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(fits & (excess > 0), np.minimum(excess / free, 1.0), 0.0)
        added = np.where(np.isinf(left), 0.0, left * spread[gap_of_part])  # (no room limit: a rise of 0)
    return capped + added, fits


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
    """Cumulative share of the gap's use at each slot, by the meter's profile, no part of it faster
    than the meter's maximum flow (or, where the gap's water needs more, than the ``max_flow_slack``
    over it that ``over_max_flow`` allows); linear where the profile has nothing for the gap, or
    where the gap's water cannot pass the meter in its time even so (its closing read is flagged
    ``over_max_flow`` by the rules, and linear is as slow as it can be)."""
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
    hour = _slot_hour_of_week(
        ends, validation.read_interval_s[closing][gap_of_part], validation.read_phase_s[closing][gap_of_part], zone
    )
    rate = profiles[meter, hour]
    # an hour the profile never saw has the meter's average rate: zero, a gap whose hours it did not
    # know put all of its water into the few it did (a daily meter's, into its last seconds)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.nansum(profiles, axis=1) / np.isfinite(profiles).sum(axis=1)
    rate = np.where(np.isnan(rate), average[meter], rate)
    weight = np.nan_to_num(rate, nan=0.0).clip(min=0) * (ends - starts) / 3600
    totals = np.add.reduceat(weight, part_start)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = weight / totals[gap_of_part]
    rise = series.volume[closing] - series.volume[closing - 1]
    most = series.max_flow[closing][gap_of_part] * (ends - starts) / 3600
    with np.errstate(invalid="ignore", divide="ignore"):
        room = np.where(rise[gap_of_part] > 0, most / rise[gap_of_part], np.inf)
    share_within, fits = _within_max_flow(share, room, part_start, gap_of_part)
    # A gap whose water needs more than the maximum flow but no more than the slack validation allows
    # (over_max_flow: 5 %, a meter's error at its top flow) is one the rules call possible: spread up
    # to that. Capped at the maximum flow alone, it did not fit and was estimated linearly, though its
    # closing read was not flagged: a household's night hours took its day's water.
    # Every part has the whole allowance, the one the closing read ends too: once the estimates
    # stand, over_max_flow judges that read over the gap, from its opening read, not over its last
    # hour (collector/vee/rules.py), so the litre the estimate before it is rounded by can flag
    # nothing. (Before, the last part kept a register digit of its allowance for that rounding, and a
    # gap within a litre of its allowance was linear, unflagged.) Linear is exactly what the rule
    # flags: its comparison decides, not this one's float.
    share_slack, fits_slack = _within_max_flow(share, room * (1 + config.max_flow_slack), part_start, gap_of_part)
    share = np.where(fits[gap_of_part], share_within, share_slack)
    fits = (fits | fits_slack) & ~validation.masks["over_max_flow"][closing]
    usable = long_gap & (totals > 0) & fits
    share = np.where(usable[gap_of_part], share, 0.0)  # (one cumulative sum runs over all gaps)
    cumulative = np.cumsum(share)
    within = cumulative - np.repeat(cumulative[part_start] - share[part_start], parts)
    fraction = np.where(usable[gap_of_slot], within[slot_positions], linear_fraction)
    return fraction, usable
