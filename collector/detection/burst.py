"""A burst behind a customer meter: flow far above anything the meter has carried before.

An interval's flow is compared with the highest flow the same meter carried in the previous
``burst_history_days`` (a household's worst hour of showers and washing machines, an irrigation
system's hour, a shop's busiest hour). Above ``burst_factor`` times that, and above
``burst_min_l_h``, it is a burst, raised on the first interval that shows it. So is a pair of
intervals above ``burst_sustained_factor`` times the highest pair, and an interval far above the
highest flow at that time of day on earlier days: ``burst_slot_factor`` times it and above the
meter's highest flow at any hour (a house's night of tank-filling is not a burst for being at
night), or (a shop whose afternoons are busy) ``burst_slot_excess_l_h`` above it and
``burst_slot_ratio`` times it, with the interval before (the burst's partial first one) above its
own time of day's highest as well (a shop's single odd busy hour looks the same in one interval).

Three rules go below ``burst_factor`` times the meter's highest flow, each only with evidence beyond
the flow itself that the meter is not doing what it usually does then (each tested only at the few
intervals above its level):

* a time of the week at which the meter drew nothing at all on every earlier week (a shop's closed
  Sunday): above ``burst_closed_factor`` times the highest flow;
* ``burst_z`` standard deviations above the mean flow at that time of day over the previous
  ``burst_history_days`` days (without days the meter drew nothing: a shop's closed days), and
  above ``burst_z_factor`` times the highest flow (a garden meter's quiet evening);
* the interval and the one before it (a burst's partial first interval and its first whole one)
  both ``burst_pair_z`` deviations above their time of day and the pair above
  ``burst_pair_z_factor`` times the highest pair (a busy shop's hour, lifted twice in a row).

A burst that adds less than a busy shop's ordinary hour to a single interval, its first interval
holding only minutes of it, is still not told from the shop's own odd busy hour within one
interval. Without enough history to know the meter, only a flow above ``burst_no_history_l_h``
counts. While the meter is still being learned (read on fewer than ``burst_learning_days`` days: a
utility's go-live week, a new meter's), the rules that know its use wait, and a burst is one far
above anything yet, or one that runs on: two intervals in a row above twice its highest hour so far,
or far above their times of day (on a bulk meter, a block of flats, only the first: a few days hold
few of its busy evenings). The burst lasts while the flow stays above half the level that triggered
it.

A burst's rate is what its intervals carry beyond the meter's usual flow at that time of day (the
median on its previous days), not beyond its mean: a shop's busy afternoon under a burst is the
shop's, not the burst's. It began where that excess rose, back over whole intervals of it that the
rules let pass (a busy hour can hide a burst for an hour or two), then its partial first interval.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import Clock, confidence, new_alert, usual_flow_at_same_time
from collector.detection.config import DetectionConfig
from collector.detection.flows import DayLayout, Flows
from collector.detection.series import SeriesBlock


def window_intervals(interval_s: int, config: DetectionConfig) -> int:
    """How many intervals a burst must be held over before the rules judge it: the intervals
    nearest ``burst_window_minutes`` (two quarter-hours), and never less than one (hourly reads: each
    interval alone, as the rules were tuned)."""
    return max(1, round(config.burst_window_minutes * 60 / interval_s))


def held_flow(f: np.ndarray, w: int) -> np.ndarray:
    """(M, T): each interval's mean flow with the ``w - 1`` before it, the flow held over the burst
    window that ends there (NaN where any is unknown, and before the first ``w - 1``). ``f`` itself
    when ``w`` is 1."""
    if w <= 1:
        return f
    out = np.full_like(f, np.nan)
    if f.shape[1] < w:  # no window ends in the block (the slices below would wrap round its end)
        return out
    total = f[:, w - 1 :].copy()
    for back in range(1, w):
        total += f[:, w - 1 - back : f.shape[1] - back]
    out[:, w - 1 :] = total / w
    return out


def _history_max(by_day: np.ndarray, days: int, lag: int) -> np.ndarray:
    """(M, D): the highest value over the ``days`` days before each day, leaving out the last
    ``lag`` intervals before it (so that the first, partial interval of a burst that began just
    before midnight is not yet "history" at 00:00). NaN counts as nothing."""

    # fmax skips NaN and, unlike nanmax, stays quiet on days without reads (warnings are not
    # thread-safe to silence, and chunks run in threads); with one or two reads a day a part is
    # empty: nothing, not an error
    def highest_of(part: np.ndarray) -> np.ndarray:
        return np.nan_to_num(np.fmax.reduce(part, axis=2, initial=-np.inf), nan=-np.inf, neginf=-np.inf)

    head = highest_of(by_day[:, :, : by_day.shape[2] - lag])
    tail = highest_of(by_day[:, :, by_day.shape[2] - lag :])
    whole = np.maximum(head, tail)
    m, d = whole.shape
    padded = np.concatenate([np.full((m, days), -np.inf), whole], axis=1)
    # days d-days … d-2 whole, day d-1 without its last ``lag`` intervals
    older = sliding_window_view(padded[:, :-1], days - 1, axis=1)[:, :d].max(axis=2) if days > 1 else padded[:, :d]
    previous = np.full((m, d), -np.inf)
    previous[:, 1:] = head[:, :-1]
    return np.maximum(older, previous)


def burst_trigger(
    block: SeriesBlock, flows: Flows, config: DetectionConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fired (M, days, per_day), threshold (M, days, 2): single-interval and sustained levels,
    early (M, T): the level of each interval on the days without enough history, NaN on the others).

    Fires when an interval's flow is above ``burst_factor`` × the highest single interval of the
    previous days, or when two intervals in a row both are above ``burst_sustained_factor`` × the
    highest such pair (sustained: an irrigation hour is high once, a burst stays high). Without
    enough history, above ``burst_no_history_l_h`` and ``burst_factor`` × the highest interval so
    far (:func:`_early_levels`). While still being learned, above that level too, or twice in a
    row above ``burst_sustained_factor`` × the highest single interval (a new meter's highest pair,
    from a few days, says little), or far above their times of day.
    """
    f = flows.flow_l_h
    if flows.spread.any():  # gap averages are not flows anyone saw: not history
        f = f.copy()
        f[flows.spread] = np.nan
    layout = DayLayout.of(block)
    seen = layout.to_days(~np.isnan(f)).sum(axis=2)
    # read more often than a burst's least duration, each rule judges the flow held over it
    w = window_intervals(block.interval_s, config)
    reach = max(1, round(config.burst_time_of_day_minutes * 60 / block.interval_s))
    f = held_flow(f, w)
    pair = np.full_like(f, np.nan)
    np.minimum(f[:, w:], f[:, :-w], out=pair[:, w:])
    single_days = layout.to_days(f, fill=np.nan)
    pair_days = layout.to_days(pair, fill=np.nan)
    k, lag = config.burst_history_days, 2 * w
    seen_days = (np.cumsum(seen, axis=1) - seen) * (flows.interval_h / 24.0)
    no_history = seen_days < config.burst_min_history_days
    days_seen = np.cumsum(seen > 0, axis=1) - (seen > 0)  # earlier days with a read (a lost read is no lost day)
    learning = ~no_history & (days_seen < config.burst_learning_days)
    thresholds = np.empty((*seen.shape, 2))
    highest = (_history_max(single_days, k, lag)[:, :, None], _history_max(pair_days, k, lag)[:, :, None])
    for i, factor in enumerate((config.burst_factor, config.burst_sustained_factor)):
        level = np.maximum(factor * highest[i][:, :, 0], config.burst_min_l_h)
        level[no_history] = config.burst_no_history_l_h
        thresholds[:, :, i] = level
    bulk = block.is_bulk[:, None]
    if learning.any():
        # a meter still being learned: far above anything yet, or sustained above its highest hour
        # (not a bulk meter: a block of flats' few days hold few of its busy evenings, and its
        # flow, never idle, would keep a burst open for as long as it stays busy)
        thresholds[:, :, 0][learning] = np.maximum(thresholds[:, :, 0], config.burst_no_history_l_h)[learning]
        sustained = np.maximum(config.burst_sustained_factor * highest[0][:, :, 0], config.burst_min_l_h)
        thresholds[:, :, 1][learning] = np.where(bulk, np.inf, sustained)[learning]
    unknown = no_history | learning  # the rules below need a meter's history to know its use
    current = layout.to_days(held_flow(flows.flow_l_h, w), fill=np.nan)
    early = np.full(f.shape, np.nan)
    new = np.flatnonzero(no_history.any(axis=1))  # meters still without history: new ones, mostly none
    if new.size:
        levels = _early_levels(f[new], lag, config)
        levels[block.is_bulk[new]] = np.inf  # a block of flats' first mornings: nothing to judge them by
        early[new] = np.where(no_history[new][:, layout.day_of_columns()], levels, np.nan)
    early_days = layout.to_days(early, fill=np.nan)
    with np.errstate(invalid="ignore"):
        fired = current > np.where(no_history[:, :, None], early_days, thresholds[:, :, :1])
        fired |= pair_days > np.where(no_history[:, :, None], early_days, thresholds[:, :, 1:])
        if config.burst_slot_factor > 0:
            far_above, busy_above, around = _slot_thresholds(single_days, no_history, config, reach)
            known = ~unknown[:, :, None]
            before = _interval_before(current, np.nan, w)
            # far above its time of day, and above the most the meter drew at any hour of late
            fired |= known & (current > far_above) & (current > config.burst_slot_highest_factor * highest[0])
            # a busy hour above its busiest: a burst only where the interval before (its first,
            # partial one) was above the busiest at its own time of day too (one odd hour is not)
            fired |= known & (current > busy_above) & (before > _interval_before(around, np.inf, w))
            # still being learned: far above their times of day twice in a row (a burst that began in the
            # meter's first days is its highest flow by now; at night it is still far above)
            learning_single = (learning & ~bulk)[:, :, None]
            fired |= learning_single & (current > far_above) & (before > _interval_before(far_above, np.inf, w))
        rare = _RareRules(single_days, current, unknown, config, reach, w)
        if config.burst_closed_factor > 0:
            level = np.maximum(config.burst_closed_factor * highest[0], config.burst_min_l_h)
            fired |= rare.closed_hour_of_week(current > level)
        if config.burst_z > 0:
            level = np.maximum(config.burst_z_factor * highest[0], config.burst_min_l_h)
            fired |= rare.far_above_time_of_day(current > level, config.burst_z, previous_too=False)
        if config.burst_pair_z > 0:
            # the partial first interval and the first whole one, both far above their time of day
            level = np.maximum(config.burst_pair_z_factor * highest[1], config.burst_min_l_h)
            fired |= rare.far_above_time_of_day(pair_days > level, config.burst_pair_z, previous_too=True)
    return fired, thresholds, early


def _early_levels(f: np.ndarray, lag: int, config: DetectionConfig) -> np.ndarray:
    """(M, T): before a meter has ``burst_min_history_days`` of history, what an interval must
    exceed to be a burst: ``burst_no_history_l_h``, and ``burst_factor`` times the highest flow the
    meter has shown so far, leaving out the ``lag`` intervals before (a burst's own partial first
    one), and nothing before any flow is seen. A new block of flats draws more than 2 m3/h every
    morning, and its first morning sets its level (on the WNTR benchmark's blocks of flats, 3,400
    false bursts a day on their second and third days came to 0 and 8; those of the first morning
    remain, up to the first ordinary peak nothing tells a block from a burst)."""
    so_far = np.full_like(f, -np.inf)
    so_far[:, lag:] = np.fmax.accumulate(np.nan_to_num(f[:, :-lag], nan=-np.inf), axis=1)
    level = np.maximum(config.burst_no_history_l_h, config.burst_factor * so_far)
    level[so_far == -np.inf] = np.inf  # nothing seen yet: a bulk meter's first read is no burst
    return level


class _RareRules:
    """Rules tested only where a cheap level is already passed (few intervals): each looks at the
    meter's earlier flows around that time of day, gathered for those intervals alone."""

    def __init__(
        self,
        single_days: np.ndarray,
        current: np.ndarray,
        no_history: np.ndarray,
        config: DetectionConfig,
        reach: int = 1,
        window: int = 1,
    ) -> None:
        m, d, p = single_days.shape
        self.shape, self.current, self.no_history, self.config = (m, d, p), current, no_history, config
        self.reach = reach  # "around a time of day": this many intervals each side
        self.window = window  # "the interval before": the burst window before
        self.weeks = -(-d // 7)
        self.flows = single_days
        # days the meter carried nothing at all (a shop's closed day) are no sample of its use
        with np.errstate(invalid="ignore"):
            self.closed_day = ~(np.fmax.reduce(single_days, axis=2) > 0)

    def _where(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat = np.flatnonzero(candidates & ~self.no_history[:, :, None])
        rows, days, slots = np.unravel_index(flat, self.shape)
        return rows, days, slots

    def closed_hour_of_week(self, candidates: np.ndarray) -> np.ndarray:
        """(M, D, P): candidates at a time of the week (± ``burst_time_of_day_minutes``) at which the meter carried
        nothing at all on each of at least ``burst_closed_min_weeks`` earlier weeks (a shop's closed
        Sunday)."""
        rows, days, slots = self._where(candidates)
        window = self._window(rows, days[:, None] - 7 * np.arange(1, self.weeks + 1)[None, :], slots)
        weeks_seen = (~np.isnan(window[:, :, self.reach])).sum(axis=1)
        idle = ~(np.nan_to_num(window, nan=0.0) > 0).any(axis=(1, 2))
        hit = idle & (weeks_seen >= self.config.burst_closed_min_weeks)
        out = np.zeros(self.shape, dtype=bool)
        out[rows[hit], days[hit], slots[hit]] = True
        return out

    def far_above_time_of_day(self, candidates: np.ndarray, z: float, *, previous_too: bool) -> np.ndarray:
        """(M, D, P): candidates ``z`` standard deviations above the mean flow at that time of day
        (± ``burst_time_of_day_minutes``) over the previous ``burst_history_days`` days without the days the meter
        carried nothing; with ``previous_too``, the burst window before as well (against its own time
        of day)."""
        rows, days, slots = self._where(candidates)
        hit = self._z(rows, days, slots) > z
        if previous_too:
            flat = days * self.shape[2] + slots - self.window
            hit &= flat >= 0
            before_days, before_slots = np.divmod(np.maximum(flat, 0), self.shape[2])
            hit &= self._z(rows, before_days, before_slots) > z
        out = np.zeros(self.shape, dtype=bool)
        out[rows[hit], days[hit], slots[hit]] = True
        return out

    def _z(self, rows: np.ndarray, days: np.ndarray, slots: np.ndarray) -> np.ndarray:
        before = days[:, None] - np.arange(self.config.burst_history_days, 0, -1)[None, :]
        window = self._window(rows, before, slots)
        closed = self.closed_day[rows[:, None], np.maximum(before, 0)]
        known = ~np.isnan(window) & ~closed[:, :, None]
        values = np.where(known, window, 0.0)
        n = np.maximum(known.sum(axis=(1, 2)), 1)
        mean = values.sum(axis=(1, 2)) / n
        var = np.maximum((values * values).sum(axis=(1, 2)) / n - mean * mean, 0.0)
        sd = np.maximum(np.sqrt(var), self.config.burst_z_min_sd_l_h)
        with np.errstate(invalid="ignore"):
            z = (self.current[rows, days, slots] - mean) / sd
        return np.where(np.isnan(z), -np.inf, z)

    def _window(self, rows: np.ndarray, days: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """(K, len(days[0]), 2 × reach + 1): flows on ``days`` (K, n) of the rows, ``reach``
        intervals each side of their slots (K,); NaN before the first day and beyond the day's ends."""
        around = slots[:, None, None] + np.arange(-self.reach, self.reach + 1)[None, None, :]
        valid = (days >= 0)[:, :, None] & (around >= 0) & (around < self.shape[2])
        window = self.flows[rows[:, None, None], np.maximum(days, 0)[:, :, None], np.clip(around, 0, self.shape[2] - 1)]
        return np.where(valid, window, np.nan)


def _interval_before(by_day: np.ndarray, fill: float, lag: int = 1) -> np.ndarray:
    """(M, D, P): each interval's value ``lag`` intervals before it (the burst window before),
    across midnight (``fill`` first)."""
    out = np.full_like(by_day, fill)
    out.reshape(out.shape[0], -1)[:, lag:] = by_day.reshape(by_day.shape[0], -1)[:, :-lag]
    return out


def _slot_thresholds(
    single_days: np.ndarray, no_history: np.ndarray, config: DetectionConfig, reach: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, D, P) each: ``burst_slot_factor`` × the highest flow on any earlier day within
    ``reach`` intervals (``burst_time_of_day_minutes``) of this time of day (a shop's meter busy
    all day but still at night shows a burst at night at once, even one smaller than its daytime
    peak); ``burst_slot_excess_l_h`` above that
    highest flow and ``burst_slot_ratio`` times it (a shop busy at this hour: a burst adds its flow
    on top of the busiest hour; inf where off); and that highest flow itself."""
    seen = np.nan_to_num(single_days, nan=-np.inf)
    earlier = np.full_like(seen, -np.inf)
    np.maximum.accumulate(seen[:, :-1], axis=1, out=earlier[:, 1:])
    around = earlier.copy()
    for shift in range(1, reach + 1):
        np.maximum(around[:, :, shift:], earlier[:, :, :-shift], out=around[:, :, shift:])
        np.maximum(around[:, :, :-shift], earlier[:, :, shift:], out=around[:, :, :-shift])
    far = np.maximum(config.burst_slot_factor * around, config.burst_min_l_h)
    far[no_history] = np.inf
    busy = np.full_like(far, np.inf)
    if config.burst_slot_excess_l_h > 0:
        over = np.maximum(around + config.burst_slot_excess_l_h, config.burst_slot_ratio * around)
        busy = np.maximum(np.minimum(far, over), config.burst_min_l_h)
        busy[no_history] = np.inf
    return far, busy, around


def _typical(excess: np.ndarray, trigger: float) -> float:
    """A burst's rate: the median excess of its intervals (NaN: not seen; none: the triggering
    interval's)."""
    seen = excess[~np.isnan(excess)]
    return max(float(np.median(seen)) if seen.size else trigger, 1e-9)


def detect_bursts(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    with np.errstate(invalid="ignore"):
        # every rule fires only above ``burst_min_l_h``, which most meters never carry: the rest
        # need not be looked at (about five in six of a fleet's households)
        carrying = np.flatnonzero((flows.flow_l_h > config.burst_min_l_h).any(axis=1))
    if carrying.size == 0:
        return []
    if carrying.size < block.n_meters:
        block, flows = block.take(carrying), flows.take(carrying)
    f = flows.flow_l_h
    layout = DayLayout.of(block)
    w = window_intervals(block.interval_s, config)
    held = held_flow(f, w)  # what the rules judged (the interval itself, on hourly reads)
    fired, threshold, early = burst_trigger(block, flows, config)
    rows, days, slots = np.nonzero(fired)
    cols = days * layout.per_day + slots - layout.offset
    clock = Clock.of(block)
    t = block.n_intervals
    per_day = 86_400 // block.interval_s
    alerts: list[Alert] = []
    covered_until: dict[int, int] = {}
    days_of = (np.arange(t) + layout.offset) // layout.per_day
    for m, j in zip(rows.tolist(), cols.tolist(), strict=True):
        previous_end = covered_until.get(m, 0)
        if j < previous_end:
            continue  # inside a burst already raised
        single, sustained = threshold[m, days_of[j]] if np.isnan(early[m, j]) else (early[m, j], early[m, j])
        level = float(single) if held[m, j] > single else min(float(sustained), float(held[m, j]))
        row = f[m]
        with np.errstate(invalid="ignore"):
            stops = np.flatnonzero(row[j + 1 :] <= 0.5 * level)
        end = j + 1 + int(stops[0]) if stops.size else t  # first interval after the burst
        # a burst window that ends within the next ``w - 1`` intervals still holds some of it
        covered_until[m] = end + w - 1
        # the burst's flow is what each interval carries beyond the meter's usual use at that time
        # of day, as it was in the days before the burst was raised (a burst running for a week
        # would otherwise become its own usual)
        lo = max(j - per_day, previous_end, 0)  # (not back into the burst before)
        span = np.arange(lo, min(end + 1, t))
        day_before = np.arange(max(j - per_day + 1, 0), j + 1)
        usual = usual_flow_at_same_time(row, flows.spread[m], day_before, clock, config.burst_history_days)
        slot = (span - day_before[0]) % per_day
        excess = row[span] - np.where(slot < usual.size, usual[np.minimum(slot, usual.size - 1)], 0.0)
        at = {int(c): float(x) for c, x in zip(span, excess, strict=True)}
        rate = _typical(excess[j + 1 - lo : end - lo] if end - j > 2 else excess[j - lo : j + 1 - lo], at[j])
        # it began where the excess rose: back over whole intervals of it (a shop's busy hours may
        # hide a burst from the rules for an hour or two), then the partial one before, if any
        first = j
        while first > lo and at[first] >= 0.75 * rate and at[first - 1] >= 0.75 * rate:
            first -= 1
        if first < j:  # the rate over all its whole intervals
            rate = _typical(excess[first - lo : end - lo], at[j])
        if first > lo and not np.isnan(at[first - 1]) and at[first - 1] > 0.25 * rate:
            first -= 1  # its partial first interval: too little of it there to trigger
        # the rate over its whole intervals only: a burst of two or three hours has as many partial
        # ones, and their median took it at half its rate (1,858 L/h as 1,139); a partial one
        # above three quarters of that median is left out once the rate is known better
        inside = excess[first - lo : end - lo]
        for _ in range(2):
            with np.errstate(invalid="ignore"):
                whole = inside[inside >= 0.75 * rate]
            if whole.size:
                rate = float(np.median(whole))
        start = clock.at(first, -float(np.clip(at[first] / rate, 0.0, 1.0)) * block.interval_s)
        ended_at = None
        last = end - 1
        if end < t and last > j and not np.isnan(at[last]) and at[last] < 0.75 * rate:
            # its partial last interval, still above the rule's half (a burst's last minutes with
            # the household's use): it ended inside it, not at its end (as its partial first
            # interval dates its start; an hour's flow too much on each burst)
            ended_at = clock.at(last - 1, float(np.clip(at[last] / rate, 0.0, 1.0)) * block.interval_s)
        elif end < t and not np.isnan(at[end]):
            tail = float(np.clip(at[end] / rate, 0.0, 1.0))
            ended_at = clock.at(end - 1, tail * block.interval_s)
            if tail > 0.0:
                # its last minutes are in that interval: with the household's use on top they can
                # fire a rule again, and a second alert would begin inside this one
                covered_until[m] = end + w
        last_seen = clock.at(end - 1)
        detected_at = clock.at(int(flows.known_idx[m, j]))
        alerts.append(
            new_alert(
                AlertKind.BURST,
                str(block.meter_ids[m]),
                str(block.dma[m]),
                start=start,
                detected_at=detected_at,
                last_seen=last_seen,
                ended_at=ended_at,
                rate_l_h=rate,
                volume_l=rate * clock.hours(start, ended_at or last_seen),
                confidence=confidence(float(held[m, j]), level),
                evidence=((clock.at(j - w) if j >= w else start, detected_at),),
            )
        )
    return alerts
