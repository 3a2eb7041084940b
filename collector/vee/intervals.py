"""Each meter's own read interval, inferred from how its actual reads are spaced.

A fleet mixes meters read every 15 minutes, hourly and once a day. A meter's interval is the
median step between its consecutive actual reads in the series loaded (28 days of look-back and
the period), taken to the nearest, by ratio, of the standard intervals that divide a day,
:data:`STANDARD_INTERVALS_S`: a median step of 50 minutes is hourly, one of 20 hours daily; or the
longer standard interval its last ``interval_change_steps`` (4) steps all have (a meter
reconfigured to read less often). A meter with fewer than ``interval_min_steps`` (3) such steps
keeps the configured ``expected_interval_s`` (3600 s).

Slots (where a gap's estimates go) lie on the meter's interval grid. Up to an hour that grid is the
UTC epoch's (whole hours for hourly meters, quarter hours for 15-minute ones); a longer interval's
grid is on the utility's local clock (:mod:`collector.vee.localtime`), shifted to the whole hour of
the day (or of its interval) at which the meter's reads are usually taken, so a daily meter read at
06:00 has its missing day estimated at 06:00, in summer too (on a UTC grid, the winter's 06:00 put
the summer's estimates at 07:00 local, an hour after the meter's real 06:00 reads).
"""

from __future__ import annotations

from datetime import UTC, tzinfo

import numpy as np

from collector.vee.config import VeeConfig
from collector.vee.localtime import to_local
from collector.vee.series import F64, B, Series

#: Read intervals that divide a day, in seconds: 5, 15 and 30 minutes, 1, 2, 3, 4, 6, 8, 12 and 24 hours.
STANDARD_INTERVALS_S = np.array([300, 900, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400], dtype=float)
_HOUR_S = 3600.0


def nearest_standard(step_s: F64) -> F64:
    """Each step taken to the nearest standard interval, by ratio (log scale)."""
    logs = np.log(STANDARD_INTERVALS_S)
    with np.errstate(divide="ignore"):
        distance = np.abs(np.log(np.maximum(step_s, 1.0))[:, None] - logs[None, :])
    return STANDARD_INTERVALS_S[np.argmin(distance, axis=1)]


def _lower_medians(groups: np.ndarray, values: F64, n_groups: int) -> tuple[F64, np.ndarray]:
    """The lower median of ``values`` per group (one of the values itself, never an average of two),
    and the count per group; NaN where a group has none."""
    order = np.lexsort((values, groups))
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    median = np.full(n_groups, np.nan)
    present = counts > 0
    median[present] = values[order][starts[present] + (counts[present] - 1) // 2]
    return median, counts


def _lengthened(step_meter: np.ndarray, steps: F64, interval: F64, recent: int) -> F64:
    """``interval`` per meter, or the longer standard interval its last ``recent`` steps all have:
    a meter reconfigured from 15-minute to hourly reads (to save its battery) kept the 28 days'
    median, 900 s, for some three weeks, and every hourly read was a gap with three estimates
    invented before it (144 in two days). A change to a shorter interval waits for the median: the
    round's two days still hold reads at the longer one, which the shorter would call gaps (the
    missing reads meanwhile are counted in the next read's interval, only not estimated)."""
    if recent < 1 or not len(steps):
        return interval
    n_meters = len(interval)
    # steps are in (meter, time) order, each meter's together: count each meter's from its last
    last = np.cumsum(np.bincount(step_meter, minlength=n_meters)) - 1
    tail = last[step_meter] - np.arange(len(steps)) < recent
    standard = nearest_standard(steps[tail])
    shortest = np.full(n_meters, np.inf)
    longest = np.zeros(n_meters)
    np.minimum.at(shortest, step_meter[tail], standard)
    np.maximum.at(longest, step_meter[tail], standard)
    count = np.bincount(step_meter[tail], minlength=n_meters)
    changed = (count >= recent) & (shortest == longest) & (shortest > interval)
    return np.where(changed, shortest, interval)


def meter_intervals(series: Series, config: VeeConfig, zone: tzinfo = UTC) -> tuple[F64, F64, B]:
    """(interval, phase, known) per meter code: the meter's read interval and the offset of its slot
    grid from the epoch's in seconds (0 for intervals up to an hour; for longer ones in ``zone``'s
    local seconds), and whether the interval is the meter's own (False: too few reads, the
    configured one)."""
    n_meters = len(series.meter_ids)
    actual = np.flatnonzero(series.quality == "actual")
    meter, ts = series.meter[actual], series.ts[actual]
    same = meter[1:] == meter[:-1]
    steps = (ts[1:] - ts[:-1])[same]
    median, counts = _lower_medians(meter[1:][same], steps, n_meters)
    interval = np.full(n_meters, float(config.expected_interval_s))
    known = counts >= max(config.interval_min_steps, 1)
    if known.any():
        interval[known] = nearest_standard(median[known])
    recent = config.interval_change_steps
    longer = _lengthened(meter[1:][same], steps, interval, recent)
    lengthened = known & (longer != interval)
    interval = np.where(lengthened, longer, interval)
    # the phase: the whole hour, within its interval, of the meter's usual reading time; a meter now
    # read less often, from its reads at the new interval only (a 15-minute meter's 28 days, read
    # around the clock, put a meter now read daily at 06:00 on a 12:00 grid)
    last_read = np.cumsum(np.bincount(meter, minlength=n_meters)) - 1
    at_new_interval = ~lengthened[meter] | (last_read[meter] - np.arange(len(meter)) <= recent)
    long = (interval[meter] > _HOUR_S) & at_new_interval
    offsets = np.mod(to_local(ts[long], zone), interval[meter][long])
    usual, _ = _lower_medians(meter[long], offsets, n_meters)
    phase = np.where(np.isfinite(usual), np.round(np.nan_to_num(usual) / _HOUR_S) * _HOUR_S, 0.0)
    return interval, np.mod(phase, interval), known
