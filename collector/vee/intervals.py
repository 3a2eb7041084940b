"""Each meter's read interval at each of its reads, inferred from how its actual reads are spaced.

A fleet mixes meters read every 15 minutes, hourly and once a day, and a meter's interval changes
when it is reconfigured (an AMI upgrade from hourly to 15-minute reads, a battery saved by reading
hourly or daily). Each step between two consecutive actual reads is taken to the nearest, by ratio,
of the standard intervals that divide a day, :data:`STANDARD_INTERVALS_S` (a step of 50 minutes is
hourly, one of 20 hours daily). A run of at least ``interval_change_steps`` (4) consecutive steps at
one standard interval is the meter reading at that interval, for the run's steps. The steps between
two runs (a gap, a read stamped off its slot, a new interval's first steps, too few yet to be a run)
have the earlier run's interval up to where it changed and the later run's from there: the split
that leaves fewest steps at one run's interval on the other's side, and of equally good ones the one
judging the rest at the shorter interval (so a gap at a change is estimated on the finer slots);
before a meter's first run they have its first run's, after its last its last's. A meter with no run has
the median step of the series loaded (28 days of look-back and the period) taken to the nearest
standard interval, or, with fewer than ``interval_min_steps`` (3) steps, the interval earlier
rounds found for it (``meters.read_interval_s``, passed as ``stored``: a daily meter back after 40
days silent has one step in a round's load, and was judged hourly, 959 hourly estimates for its 39
missing days), and for a meter VEE has never found one for (a new meter's first 2 steps), the
configured ``expected_interval_s`` (3600 s) with ``known`` False: its steps are judged for gaps
only once its interval is known (:func:`collector.vee.rules.validate`), so a new daily meter's first
steps got 23 hourly estimates each, and a missing day among them 47 for good.

Judged at one interval per meter, its median's, the hourly reads of a meter now read every 15 minutes
were each a gap with three estimates invented before it once a round reached them (516,081 estimates
on 988 meters after their hourly history was imported). A change either way takes over after 4 steps
at the new interval, back to the change's first step. The meter's interval (``meters.read_interval_s``)
is the one at its last step.

Slots (where a gap's estimates go) lie on the interval's grid. Up to an hour that grid is the UTC
epoch's (whole hours for hourly meters, quarter hours for 15-minute ones); a longer interval's grid is
on the utility's local clock (:mod:`collector.vee.localtime`), shifted to the whole hour of the day
(or of its interval) at which the run's reads are usually taken, so a daily meter read at 06:00 has
its missing day estimated at 06:00, in summer too (on a UTC grid, the winter's 06:00 put the
summer's estimates at 07:00 local, an hour after the meter's real 06:00 reads).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, tzinfo

import numpy as np

from collector.vee.config import VeeConfig
from collector.vee.localtime import to_local
from collector.vee.series import F64, I64, B, Series

#: Read intervals that divide a day, in seconds: 5, 10, 15, 20 and 30 minutes, 1, 2, 3, 4, 6, 8, 12 and
#: 24 hours. Without 10 and 20 minutes (common on AMI loggers), both went to 15: a 10-minute meter's
#: missing read was no gap (1,200 s, under 1.5 x 900), a 20-minute meter's was estimated at 15-minute
#: slots. Neighbours are at most 2x apart, so a gateway's jitter (a tenth of the interval) cannot
#: make 4 steps in a row of one meter go to another interval.
STANDARD_INTERVALS_S = np.array(
    [300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400], dtype=float
)
_HOUR_S = 3600.0


@dataclass(frozen=True)
class ReadIntervals:
    """Per meter code: ``interval_s`` and ``phase_s`` at its last actual read (the offset of the
    slot grid from the epoch's in seconds: 0 up to an hour, local seconds over it), and ``known``
    (False: too few reads and none found before, the configured interval, whose gaps wait); per
    reading: ``read_interval_s`` and ``read_phase_s``, those of the step between actual reads that
    the reading closes or lies in."""

    interval_s: F64
    phase_s: F64
    known: B
    read_interval_s: F64
    read_phase_s: F64

    def without(self, drop: B) -> ReadIntervals:
        """The same, for the series without the readings in ``drop`` (none of them actual reads:
        only actual reads decide the intervals)."""
        keep = ~drop
        return replace(self, read_interval_s=self.read_interval_s[keep], read_phase_s=self.read_phase_s[keep])


def nearest_standard(step_s: F64) -> F64:
    """Each step taken to the nearest standard interval, by ratio (log scale; halfway, the shorter)."""
    halfway = np.sqrt(STANDARD_INTERVALS_S[:-1] * STANDARD_INTERVALS_S[1:])
    return STANDARD_INTERVALS_S[np.searchsorted(halfway, step_s, side="left")]


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


def _usual_phase(groups: I64, ts: F64, interval: F64, n_groups: int, zone: tzinfo) -> F64:
    """Per group, the whole hour within its ``interval`` (per read) at which its reads at ``ts`` are
    usually taken, on ``zone``'s clock; 0 for intervals up to an hour."""
    long = interval > _HOUR_S
    offsets = np.mod(to_local(ts[long], zone), interval[long])
    usual, _ = _lower_medians(groups[long], offsets, n_groups)
    return np.where(np.isfinite(usual), np.round(np.nan_to_num(usual) / _HOUR_S) * _HOUR_S, 0.0)


def around(chosen: B, group: I64) -> tuple[I64, I64]:
    """Per element, the last ``chosen`` element at or before it in its group and the first at or
    after it; -1 where there is none."""
    n = len(chosen)
    index = np.arange(n)
    before = np.maximum.accumulate(np.where(chosen, index, -1))
    after = np.minimum.accumulate(np.where(chosen, index, n)[::-1])[::-1]
    before = np.where((before >= 0) & (group[np.maximum(before, 0)] == group), before, -1)
    after = np.where((after < n) & (group[np.minimum(after, n - 1)] == group), after, -1)
    return before, after


def _splits(stretch: I64, between: B, cost: np.ndarray, later_shorter: B) -> I64:
    """Per stretch (the steps between two runs), the index of its first step at the later run's
    interval: the one with the lowest sum of ``cost`` before it (or none, ``n``: the lowest sum is
    the stretch's whole); of equal sums the first where the later interval is the shorter
    (``later_shorter``, per stretch), else the last."""
    n, groups = len(stretch), int(stretch[-1]) + 1
    index = np.arange(n)
    total = np.cumsum(cost)
    start = np.flatnonzero(np.r_[True, stretch[1:] != stretch[:-1]])
    before = total - cost - (total - cost)[start][stretch]  # the sum before each step, in its stretch
    whole = np.zeros(groups, np.int64)
    np.add.at(whole, stretch, cost)
    lowest = whole.copy()
    np.minimum.at(lowest, stretch[between], before[between])
    best = between & (before == lowest[stretch])
    earliest, latest = np.full(groups, n), np.full(groups, -1)
    np.minimum.at(earliest, stretch[best], index[best])
    np.maximum.at(latest, stretch[best], index[best])
    latest = np.where((latest < 0) | (whole == lowest), n, latest)
    return np.where(later_shorter, earliest, latest)


def _sources(standard: F64, established: B, step_meter: I64) -> I64:
    """Per step, the step of an established run whose interval is in force at it (-1: none).

    A step of a run is its run's. The steps between two runs are split where the interval changed:
    those before the split have the earlier run's interval, those after it the later run's, at the
    split that leaves fewest steps at the one run's interval on the other's side (a gap, a read
    stamped off its slot or a new interval's first steps, too few yet to be a run, go either way);
    of equally good splits, the one that judges the other steps at the shorter interval. Before a
    meter's first run its steps have that run's interval, after its last run that one's."""
    n = len(standard)
    before, after = around(established, step_meter)
    new_meter = np.r_[True, step_meter[1:] != step_meter[:-1]]
    stretch = np.cumsum(established | new_meter) - 1  # a run's step and the steps after it up to the next run
    between = ~established & (before >= 0) & (after >= 0)
    earlier, later = standard[np.maximum(before, 0)], standard[np.maximum(after, 0)]
    cost = (between & (standard == later)).astype(np.int64) - (between & (standard == earlier)).astype(np.int64)
    later_shorter = np.zeros(int(stretch[-1]) + 1, bool)
    later_shorter[stretch[between]] = (later < earlier)[between]
    split = _splits(stretch, between, cost, later_shorter)
    takes_later = (before < 0) | ((after >= 0) & (np.arange(n) >= split[stretch]))
    return np.where(established, np.arange(n), np.where(takes_later, after, before))


def _steps_in_force(
    step_meter: I64, steps: F64, closing_ts: F64, usual: F64, usual_phase: F64, known: B, runs_of: int, zone: tzinfo
) -> tuple[F64, F64]:
    """(interval, phase) in force at each step: its run's, where it is in a run of ``runs_of`` steps
    or more at one standard interval, else a neighbouring run's (:func:`_sources`), else the
    meter's ``usual``."""
    interval, phase = usual[step_meter], usual_phase[step_meter]
    if runs_of < 1 or not len(steps):
        return interval, phase
    standard = nearest_standard(steps)
    new_run = np.ones(len(steps), bool)
    new_run[1:] = (step_meter[1:] != step_meter[:-1]) | (standard[1:] != standard[:-1])
    run = np.cumsum(new_run) - 1
    length = np.bincount(run)
    established = (length[run] >= runs_of) & known[step_meter]
    # the reading hour of each run over an hour, from its own reads
    run_phase = _usual_phase(run[established], closing_ts[established], standard[established], len(length), zone)
    source = _sources(standard, established, step_meter)
    found = source >= 0
    safe = np.maximum(source, 0)
    interval = np.where(found, standard[safe], interval)
    phase = np.where(found, run_phase[run[safe]], phase)
    return interval, np.mod(phase, interval)


def read_intervals(series: Series, config: VeeConfig, zone: tzinfo = UTC, stored: F64 | None = None) -> ReadIntervals:
    """Every meter's interval and slot grid, at its last read and at each reading of ``series``;
    ``stored``: per meter code, the interval earlier rounds found (NaN: none), for a meter with too
    few steps in ``series`` to find its own."""
    n_meters = len(series.meter_ids)
    actual = np.flatnonzero(series.quality == "actual")
    meter, ts = series.meter[actual], series.ts[actual]
    same = meter[1:] == meter[:-1]
    closing = np.flatnonzero(same) + 1  # position (among the actual reads) of each step's closing read
    step_meter, steps = meter[closing], ts[closing] - ts[closing - 1]
    median, counts = _lower_medians(step_meter, steps, n_meters)
    usual = np.full(n_meters, float(config.expected_interval_s))
    known = counts >= max(config.interval_min_steps, 1)
    if known.any():
        usual[known] = nearest_standard(median[known])
    if stored is not None:
        earlier = ~known & np.isfinite(stored)
        usual[earlier], known = stored[earlier], known | earlier
    usual_phase = _usual_phase(meter, ts, usual[meter], n_meters, zone)
    step_interval, step_phase = _steps_in_force(
        step_meter, steps, ts[closing], usual, usual_phase, known, config.interval_change_steps, zone
    )
    # per meter: at its last step
    interval, phase = usual.copy(), np.mod(usual_phase, usual)
    if len(steps):
        last = np.flatnonzero(np.append(step_meter[1:] != step_meter[:-1], True))
        interval[step_meter[last]] = step_interval[last]
        phase[step_meter[last]] = step_phase[last]
    # per actual read: the step it closes (a meter's first read: the step it opens)
    at_actual, at_actual_phase = interval[meter], phase[meter]
    opening = closing - 1
    first = opening[~np.isin(opening, closing)]
    at_actual[first] = step_interval[np.searchsorted(closing, first + 1)]
    at_actual_phase[first] = step_phase[np.searchsorted(closing, first + 1)]
    at_actual[closing], at_actual_phase[closing] = step_interval, step_phase
    # per reading: the step of the next actual read at or after it (after the last: the meter's now)
    is_actual = np.zeros(len(series), bool)
    is_actual[actual] = True
    _, source = around(is_actual, series.meter)
    found = source >= 0
    rank = np.cumsum(is_actual) - 1  # position among the actual reads
    pick = rank[np.maximum(source, 0)]
    read_interval = np.where(found, at_actual[pick] if len(actual) else 0.0, interval[series.meter])
    read_phase = np.where(found, at_actual_phase[pick] if len(actual) else 0.0, phase[series.meter])
    return ReadIntervals(interval, phase, known, read_interval, read_phase)
