"""Continuous flow at a customer meter: a leak behind the meter never lets the register rest.

A household's register stands still in most night hours and in many day hours. Each interval with
flow at a time of day when this meter is usually idle is evidence of a leak: it adds ``-ln(1 - p0)``
nats, where ``p0`` is the share of the meter's recent days (up to ``leak_history_days``, before the
current day, weekdays and weekends apart) on which it was idle at that time of day. An idle interval
ends the run. A run whose evidence reaches ``leak_threshold_nats`` is a leak. So a meter that is
always busy at some hour (a business open around the clock) gains nothing there, a household that is
always quiet at 03:00 gains a lot, and the detector needs no clock for "night" and works for any
time zone.

The evidence takes the hours as independent, and a long day of a household's own use (guests,
cleaning, the garden) is not: it can gather as much as a leak. What tells them apart is the floor
(:func:`floor_held`): a leak lifts every interval to its own rate, so the household's idle hours all
show that rate, while the quietest hours of a busy day each carry whatever little was used in them.
An alert waits until ``leak_floor_intervals`` intervals sit on one floor.
"""

from __future__ import annotations

import functools
from datetime import datetime

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import Clock, confidence, flows_at_same_time, nanmedian_last, new_alert
from collector.detection.config import DetectionConfig
from collector.detection.flows import DayLayout, Flows, first_crossings, prior_days_sum, prior_days_sum_by_type
from collector.detection.leak_onset import likeliest_onset
from collector.detection.series import SeriesBlock


def leak_evidence(
    block: SeriesBlock, flows: Flows, config: DetectionConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alarm (M, T): evidence at some flow level reached the threshold, evidence at the register's
    step level (M, T) in nats, run-ending mask at that level (M, T)).

    The evidence is computed per flow level: at the register's step (any flow at all) and at each of
    ``leak_levels_l_h``. At level L an interval with at least L adds ``-ln(1 - p)``, p being how
    often this meter carried less than L at that time of day; one with less ends the run. A leak of
    rate r keeps every interval at or above r, so large leaks collect evidence at their own level
    quickly, even against a household's daytime use; small ones at the step level, at night.
    """
    f = flows.flow_l_h
    known = ~np.isnan(f)
    gaps = flows.spread.any()
    observed = known & ~flows.spread if gaps else known
    layout = DayLayout.of(block)
    days = config.leak_history_days
    # weekends are their own history: people sleep in, are home at noon
    weekend = layout.weekend(block.timestamps)
    observed_days = layout.to_days(observed.view(np.uint8))
    seen_n = prior_days_sum_by_type(observed_days, days, weekend, np.int32)
    seen_all = prior_days_sum(observed_days, days, np.int32)  # every day type: see weight_tables
    table, prior_code, n_priors, most = weight_tables(config)
    alarm = np.zeros(f.shape, dtype=bool)
    step_score = np.zeros(f.shape)
    step_ends = np.ones(f.shape, dtype=bool)
    # a run needs this many intervals with flow to reach the threshold at all
    shortest = int(np.ceil(config.leak_threshold_nats / most))
    n = days + 1
    for i, level in enumerate((0.5 * flows.step_flow_l_h, *config.leak_levels_l_h)):
        with np.errstate(invalid="ignore"):
            above = f >= level
        flowing = above & ~flows.spread if gaps else above
        ends = (observed & ~above) | (flows.spread & ~above) | ~known if gaps else ~above | ~known
        if i == 0:
            step_ends = ends
        rows = _rows_with_run(ends, shortest)  # most meters never flow that long at a level
        if rows.size == 0:
            continue
        low_seen = layout.to_days((observed[rows] & ~above[rows]).view(np.uint8))
        low_n = prior_days_sum_by_type(low_seen, days, weekend, np.int32)
        low_all = prior_days_sum(low_seen, days, np.int32)
        # the weight depends only on a few small counts: look it up instead of a log per interval
        code = prior_code.take(low_all * n + seen_all[rows])
        weight = layout.from_days(table.take((low_n * n + seen_n[rows]) * n_priors + code)) * flowing[rows]
        cumulative = np.cumsum(weight, axis=1, dtype=np.float64)
        # evidence restarts after each end; ``cumulative`` never decreases, so its value at the
        # latest end is the running maximum of its values at ends
        score = cumulative - np.maximum.accumulate(cumulative * ends[rows], axis=1)
        extra = config.leak_step_extra_nats if i == 0 else 0.0
        alarm[rows] |= _above_threshold(score, ends[rows], layout, config, extra)
        if i == 0:
            step_score[rows] = score
    return alarm, step_score, step_ends


@functools.cache
def weight_tables(config: DetectionConfig) -> tuple[np.ndarray, np.ndarray, int, float]:
    """The evidence (nats) of one interval above a level, as lookup tables, and its largest value.

    ``low`` of the ``seen`` recent days of the slot's own type (weekdays, weekends) were below the
    level at that time of day; ``low_all`` of ``seen_all`` days of any type. p0 is ``low / seen``
    with a prior worth ``leak_prior_days`` days, whose value is the flat ``leak_prior_p0`` except
    where the meter was below the level on at least ``leak_shared_p0`` of all its recent days: there
    it is that share. A weekend has few days of its own history (six in three weeks), so under the
    flat prior its evidence stays weak for long; but a meter idle at 03:00 on nearly every recent
    day, weekdays and weekends together, is most likely idle at 03:00 this Sunday too. Elsewhere
    (the hours people sleep in, or spend at home, at weekends) the day types differ.

    The same holds the other way: where the meter was below the level on at most
    ``1 - leak_shared_p0`` of its recent days (a block of flats, never idle; a household's busiest
    hours), that share is the prior. Under the flat one, each weekend hour of a block's ordinary
    flow weighed as if it were idle a quarter of the time: on the WNTR benchmark's blocks of flats,
    5-35 false leaks and bursts (continuous flow of 250 L/h and more) a day from their second week,
    against 0-4 with it. The price: a leak that begins on a weekend gathers no more evidence in a
    household's busy hours than it would on a weekday (eight 2.5 L/h leaks behind night owls, begun
    on a Saturday, are raised 4-16 h later, one 75 h after it began; on the labelled fleets the p90
    time to detect a large leak rose by up to 1.2 h on two seeds, and nothing else moved).

    Returns (weights by ``(low, seen, prior)`` flattened, the prior's code by ``(low_all,
    seen_all)`` flattened (0: the flat prior), the number of priors, the largest weight possible).
    """
    n = config.leak_history_days + 1
    k = np.arange(n, dtype=np.float64)
    prior = config.leak_prior_days
    p_all = (k[:, None] + config.leak_prior_p0 * prior) / (k[None, :] + prior)
    # idle, or never idle, on nearly all recent days (low ≤ seen: the rest never occur)
    nearly_all = (p_all >= config.leak_shared_p0) | (p_all <= 1.0 - config.leak_shared_p0)
    shared = nearly_all & (k[:, None] <= k[None, :])
    priors = np.r_[config.leak_prior_p0, p_all[shared]]
    code = np.zeros((n, n), dtype=np.int32)
    code[shared] = np.arange(1, priors.size, dtype=np.int32)
    p0 = np.minimum((k[:, None, None] + priors * prior) / (k[None, :, None] + prior), config.leak_p0_max)
    weights = (-np.log1p(-p0)).astype(np.float32)
    most = float(weights[k[:, None] <= k[None, :]].max())
    table, codes = weights.ravel(), code.ravel()
    table.flags.writeable = codes.flags.writeable = False
    return table, codes, int(priors.size), most


def _rows_with_run(ends: np.ndarray, length: int) -> np.ndarray:
    """Rows with ``length`` intervals flowing in one run (no end between them): the only rows whose
    evidence can reach the threshold. A gap's spread intervals neither flow nor end
    a run, so the flowing intervals of a run need not be consecutive. (Counting only consecutive
    ones, a meter whose leak was read around a gap was looked at only if it flowed ``length`` in a
    row somewhere else, later too: the data after a leak decided whether it was raised; issue #6.)
    Some rows more: those with ``length`` intervals in a row that end nothing (flowing, or spread
    over a gap at that level), a cheap bound the evidence itself then settles."""
    return _rows_with_consecutive(~ends, length)


def _rows_with_consecutive(mask: np.ndarray, length: int) -> np.ndarray:
    """Rows of ``mask`` with ``length`` consecutive True somewhere."""
    t = mask.shape[1]
    if length > t:
        return np.zeros(0, dtype=np.intp)
    run = mask[:, length - 1 :].copy()
    for k in range(1, length):
        run &= mask[:, length - 1 - k : t - k]
    return np.flatnonzero(run.any(axis=1))


def _above_threshold(
    score: np.ndarray, ends: np.ndarray, layout: DayLayout, config: DetectionConfig, extra: float = 0.0
) -> np.ndarray:
    """(M, T): ``score`` at least ``leak_threshold_nats``, and at least ``leak_margin_nats`` above the
    most evidence the meter's ordinary use reached on any of the previous ``leak_history_days``.
    Busy days (guests, a heavy household) make hours with use come in long streaks that the per-hour
    probabilities, taken as independent, overrate; the meter's own record corrects for that.

    A run that has gone on for more than a day is not held to its own evidence of the days before:
    for it, ordinary use is the runs that ended (``ends``), each counted on the day it ended. Held
    to its own, a small leak behind a household that draws water at night too, gathering a few nats
    a night, raised its bar by each day's evidence, as fast as the evidence grew, and was never
    raised. A busy day that runs past midnight is still held to its own evening. A meter whose flow
    never stopped since the data began is held to no ordinary use, and its continuous flow may be
    raised in its first days: a household's leak older than the data, or a block of flats' ordinary
    flow, which a person dismisses once. (Held to its own record instead, such a leak went unraised,
    or was raised by one hourly window and not the next, as their starts fell inside it.)

    The bar is never below ``leak_threshold_nats`` (plus ``extra``): only the few rows whose score
    reaches that somewhere (a few in a hundred on the benchmark's fleets) are looked at further."""
    alarm = np.zeros(score.shape, dtype=bool)
    rows = np.flatnonzero((score >= config.leak_threshold_nats + extra).any(axis=1))
    if rows.size:
        alarm[rows] = _above_bar(score[rows], ends[rows], layout, config, extra)
    return alarm


def _above_bar(
    score: np.ndarray, ends: np.ndarray, layout: DayLayout, config: DetectionConfig, extra: float
) -> np.ndarray:
    """:func:`_above_threshold` on rows that reach the threshold somewhere."""
    by_day = layout.to_days(score, fill=0.0)
    ended = layout.to_days(ends, fill=True)
    ends_later_that_day = np.logical_or.accumulate(ended[:, :, ::-1], axis=2)[:, :, ::-1]
    bar_any = _bar(by_day.max(axis=2), config, extra)
    bar_ended = _bar(np.where(ends_later_that_day, by_day, 0.0).max(axis=2), config, extra)
    columns = np.arange(score.shape[1])
    last_end = np.maximum.accumulate(np.where(ends, columns, -1), axis=1)
    long_run = layout.to_days(columns - last_end > layout.per_day, fill=False)
    bar = np.where(long_run, bar_ended[:, :, None], bar_any[:, :, None])
    return layout.from_days(by_day >= bar)


def _bar(day_max: np.ndarray, config: DetectionConfig, extra: float) -> np.ndarray:
    """(M, days): the evidence each day needs, from the most of each of the days before it."""
    k = config.leak_history_days
    padded = np.concatenate([np.zeros((day_max.shape[0], k)), day_max], axis=1)
    previous = sliding_window_view(padded, k, axis=1)[:, : day_max.shape[1]].max(axis=2)
    return np.maximum(previous + config.leak_margin_nats, config.leak_threshold_nats) + extra


def detect_leaks(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    alarm, score, ends = leak_evidence(block, flows, config)
    rows, cols = first_crossings(alarm)
    if rows.size == 0:
        return []
    f = flows.flow_l_h
    clock = Clock.of(block)
    t = block.n_intervals
    per_day = 86_400 // block.interval_s
    alerts = []
    raised_until: dict[int, int] = {}
    for m, j in zip(rows.tolist(), cols.tolist(), strict=True):
        if j < raised_until.get(m, -1):
            continue  # another level already raised this run
        earlier_ends = np.flatnonzero(ends[m, :j])
        run_start = int(earlier_ends[-1]) + 1 if earlier_ends.size else 0
        later_ends = np.flatnonzero(ends[m, j:])
        run_end = j + int(later_ends[0]) if later_ends.size else t  # first column after the run
        raised_until[m] = run_end
        step = float(flows.step_flow_l_h[m, 0])
        if config.leak_floor_intervals > 1:
            lo = max(run_start, j - _FLOOR_LOOK_BACK_DAYS * per_day)
            hi = min(run_end, j + _FLOOR_WAIT_DAYS * per_day)
            seen = np.where(flows.spread[m, lo:hi], np.nan, f[m, lo:hi])
            held = floor_held(seen, step, config.leak_floor_tolerance, config.leak_floor_intervals, j - lo)
            if held is None:
                continue  # the run never settled on a floor: a busy stretch of the household's own use
            j = lo + held
        # the onset is looked for up to detection, against the flows of up to a day after it (as
        # far as they are known: the alert is updated while the leak goes on) and the leak's floor:
        # the lowest one its flows sat on, up to then
        ahead = min(run_end, j + per_day + 1)
        level = None
        if config.leak_floor_intervals > 1:
            window = np.where(flows.spread[m, lo:ahead], np.nan, f[m, lo:ahead])
            level = lowest_floor(window, step, config.leak_floor_tolerance, config.leak_floor_intervals)
        held_long = None if level is None else _held_long(window, level, j - lo, step, config)
        k, floor = _leak_onset(f[m], flows.spread[m], run_start, j, ahead, step, held_long)
        if level is not None:
            # no earlier than the last interval clearly below the leak's floor: the household's
            # busy hours just before a leak may hold more than half its rate. And that floor, not
            # the least flow after the onset, is the leak's: a repair by day leaves the household's
            # evening use running the run on, and its least flow is no floor of the leak's (the
            # leak would never end, at a mixed rate)
            clear = level - float(floor_tolerance(level, step, config.leak_floor_tolerance))
            with np.errstate(invalid="ignore"):
                below = np.flatnonzero(window[: j - lo + 1] < clear)
            if below.size and lo + int(below[-1]) > k:
                k = lo + int(below[-1])
            floor = max(floor, level)
        # (the onset interval k is partial: the leak began inside it; none: before the run began)
        first = k + 1 if k >= run_start else run_start + (1 if j > run_start else 0)
        last = _leak_last(f[m], flows.spread[m], first, run_end, floor, step, config.leak_floor_tolerance)
        rate = _leak_rate(f[m], flows.spread[m], first, last + 1, step)
        share = float(np.clip(np.nan_to_num(f[m, k]) / rate, 0.0, 1.0)) if k >= run_start else 1.0
        start = clock.at(max(k, run_start), -share * block.interval_s)
        if k >= max(run_start - 1, 0):  # (the idle interval before the run is the last below, too)
            until_known = min(run_end, j + per_day + 1, last + 1)
            before_run = k < run_start
            start = _onset_among_use(
                f[m], flows.spread[m], k, until_known, rate, step, start, clock, config, before_run=before_run, latest=j
            )
        # the leak ran until its floor went: household use may keep the register moving for hours
        # longer (and the run, which ends at the first read with no flow), but that is not the leak's
        if last < run_end - 1 and not np.isnan(f[m, last + 1]):
            tail = float(np.clip(f[m, last + 1] / rate, 0.0, 1.0))
            until = clock.at(last, tail * block.interval_s)
            last_seen = clock.at(last + 1 if tail > 0 else last)
        else:
            until = last_seen = clock.at(run_end - 1)
        detected_at = clock.at(int(flows.known_idx[m, j]))
        ended = run_end < t and not np.isnan(f[m, run_end])
        alerts.append(
            new_alert(
                AlertKind.LEAK,
                str(block.meter_ids[m]),
                str(block.dma[m]),
                start=start,
                detected_at=detected_at,
                last_seen=last_seen,
                ended_at=until if ended else None,
                rate_l_h=rate,
                volume_l=rate * clock.hours(start, until),
                confidence=confidence(
                    max(float(score[m, run_end - 1]), config.leak_threshold_nats), config.leak_threshold_nats
                ),
                evidence=((clock.at(max(run_start - 1, 0)), detected_at),),
            )
        )
    return alerts


def _held_long(window: np.ndarray, level: float, j: int, step: float, config: DetectionConfig) -> float | None:
    """``level`` where the flows of ``window`` up to ``j`` sat on it in at least ``_LONG_FLOOR``
    intervals (else None): the floor a small leak's idle hours make, not a few hours of the
    household's own use before a large one (seed 22's M009857: a morning on 9-10 L/h three times,
    then 192 L/h from 11:47, was dated from the morning at that floor's rate from the data cut at
    its ``detected_at``)."""
    with np.errstate(invalid="ignore"):
        on = np.abs(window[: j + 1] - level) <= floor_tolerance(level, step, config.leak_floor_tolerance)
    return level if int(np.count_nonzero(on)) >= _LONG_FLOOR else None


#: Intervals on a floor that make it a leak's for the onset (:func:`_held_long`): twice the floor rule's three.
_LONG_FLOOR = 6


#: How far before the evidence threshold a leak's floor is looked for, and how long after it it is
#: waited for (days).
_FLOOR_LOOK_BACK_DAYS = 3
_FLOOR_WAIT_DAYS = 2


def floor_held(flows: np.ndarray, step: float, share: float, need: int, first: int) -> int | None:
    """The first index, from ``first`` on, by which ``need`` of ``flows`` (NaN: not seen) sit on one
    floor, or None.

    A floor is a flow no later one falls clearly below, with the flows within ``share`` of it (or
    one and a half register steps) counted as on it. A leak of rate r makes one: its intervals
    never carry less than r, and each of the household's idle hours carries r. The quietest hours
    of a day of the household's own use do not: each carries whatever little was used in it.
    Causal: the answer at an index depends only on the flows up to it.
    """
    seen, _, on_floor = _floors(flows, step, share)
    reached = np.flatnonzero((on_floor.max(axis=0, initial=0) >= need) & (seen >= first))
    return int(seen[reached[0]]) if reached.size else None


def lowest_floor(flows: np.ndarray, step: float, share: float, need: int) -> float | None:
    """The lowest floor (see :func:`floor_held`) that ``need`` of ``flows`` sat on, or None: a
    leak's rate, which its idle hours show, below the household's use on top of it."""
    _, v, on_floor = _floors(flows, step, share)
    held = on_floor.max(axis=1, initial=0) >= need
    return float(v[held].min()) if held.any() else None


def floor_tolerance(level: float | np.ndarray, step: float, share: float) -> np.ndarray:
    """How far a flow may stray from a floor ``level`` and still sit on it: ``share`` of it, or one
    and a half register steps where that is more (a steady flow reads a step above or below it)."""
    return np.maximum(1.5 * step, share * np.asarray(level))


def _floors(flows: np.ndarray, step: float, share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the indices of the flows seen, those flows v, [i, l]: how many of them from i to l sit on
    v[i] as a floor, 0 once one fell clearly below it)."""
    seen = np.flatnonzero(~np.isnan(flows))
    v = flows[seen]
    n = v.size
    tolerance = floor_tolerance(v, step, share)[:, None]  # around each candidate floor (rows)
    later = np.triu(np.ones((n, n), dtype=bool))  # [i, l]: l at or after candidate i
    # [i, l]: no flow from i to l fell clearly below i's (before i: vacuously)
    unbroken = np.logical_and.accumulate((v[None, :] >= v[:, None] - tolerance) | ~later, axis=1)
    on_floor = (np.abs(v[None, :] - v[:, None]) <= tolerance) & later & unbroken
    return seen, v, np.where(unbroken, np.cumsum(on_floor, axis=1), 0)


#: Flows an onset needs after it (see :func:`_leak_onset`).
_ONSET_AFTER = 5


def _leak_onset(
    f: np.ndarray, spread: np.ndarray, lo: int, j: int, hi: int, step: float, level: float | None = None
) -> tuple[int, float]:
    """(the interval, from ``lo`` to ``j``, the leak began in; the flow's floor from then on), from
    the flows of ``[lo, hi)``.

    A leak lifts the floor of the flow: from its onset on, no interval carries less than the leak
    alone, and before it the household's quiet hours carry nothing. So the onset is the last
    interval of the run (``lo`` … ``j``) that carried less than half the least flow of every
    interval after it (the partial interval the leak began in, or the household's last quiet hour
    before it); ``lo - 1`` when there is none (it began before the run did). Half, not "less":
    an hour of the leak alone followed by hours of use would look like its start, so the onset
    needs ``_ONSET_AFTER`` flows after it (a run reaches the evidence threshold in no fewer). The
    two intervals after that onset may still be partial (more than half under the leak) or an
    hour of light use just before it: against the floor of the intervals from the third on, the
    onset moves to the last of them more than a register step below it. Gap averages are not
    flows anyone saw: they count as nothing. The least flow after is taken no higher than the
    leak's own ``level`` (its floor, where known): where the data end in hours of use, an hour of
    the leak alone sat below half of them and was taken for the last before the leak (raised at
    the end of an evening's use, a 2 L/h leak begun 62 h before was dated at its ``detected_at``).
    """
    seen = np.where(np.isnan(f[lo:hi]) | spread[lo:hi], np.inf, f[lo:hi])
    after = np.r_[np.minimum.accumulate(seen[::-1])[::-1][1:], -np.inf]  # the least flow after each
    later = np.r_[np.cumsum(np.isfinite(seen)[::-1])[::-1][1:], 0]  # how many flows after each
    # no higher than the leak's own floor, where known: the flows after an interval may be hours of
    # use alone (the data end in the evening's), which an interval of the leak alone is below
    bar = after if level is None else np.minimum(after, level)
    with np.errstate(invalid="ignore"):  # inf - inf where nothing after is known: not below
        below = np.flatnonzero((seen < bar - np.maximum(1.5 * step, 0.5 * bar)) & (later >= _ONSET_AFTER))
    below = below[below <= j - lo]
    k = lo + int(below[-1]) if below.size else lo - 1
    # the two intervals after it may still be partial, or the household's light use just before
    # the leak: the floor from the third on, and the onset moved to the last of them clearly below
    first = max(k, lo)
    tail = seen[first + 3 - lo :]
    floor = float(tail.min()) if tail.size and np.isfinite(tail.min()) else float(after[first - lo])
    if not np.isfinite(floor):
        return k, step
    again = np.flatnonzero(seen[first - lo : min(first + 3, j + 1) - lo] < floor - 1.5 * step)
    if again.size:
        k = first + int(again[-1])
    return k, floor


def _onset_among_use(
    f: np.ndarray,
    spread: np.ndarray,
    k: int,
    hi: int,
    rate: float,
    step: float,
    earliest: datetime,
    clock: Clock,
    config: DetectionConfig,
    *,
    before_run: bool,
    latest: int,
) -> datetime:
    """The leak's start, where the meter was in use when it began: no earlier than ``earliest``,
    the instant that ``k`` (the last interval clearly below the leak, or the idle one just
    ``before_run``) gives.

    An interval of use after ``k`` carries more than the leak, so it could be use alone or use on
    top of it, up to the first that shows the leak alone (its rate, at a time the meter is idle on
    more of its earlier days than it draws about that much; ``hi`` if none comes). What tells them
    apart is the meter's own use at that time of day: the excess over its median on the previous
    ``leak_history_days`` days is about nothing before the leak and about its rate after (a shop
    busy from 07:00 whose tap began to run at 10:30 shows its usual 08:00 and 09:00, and 100 L/h
    more from 11:00). The onset is the likeliest given that use
    (:func:`~collector.detection.leak_onset.likeliest_onset`, each hour's use read with the meter's
    own spread there): a shop's steady hours pin it, and a household's erratic ones still weigh
    what each hour could hold. Before, a step was fitted to each hour's excess over its median,
    weighed by how far the use there usually strays: a household's erratic hours barely moved it
    from ``earliest``, and of the large leaks more than an hour off over seeds 11-16 (62 of 510)
    most had begun in an hour of use beside others. Continuous flow at a burst's rate, raised as a
    burst, keeps that step (the bursts' estimates are not this detector's to change).
    """
    span = np.arange(k, hi)
    past, same_kind = flows_at_same_time(f, spread, span, clock, config.leak_history_days)
    if past is None:
        return earliest
    seen = np.where(spread[span], np.nan, f[span])
    tolerance = float(floor_tolerance(rate, step, config.leak_floor_tolerance))
    of_kind = same_kind & ~np.isnan(past)
    n_of_kind = np.maximum(of_kind.sum(axis=1), 1)
    idle_share = (of_kind & (past < 0.5 * step)).sum(axis=1) / n_of_kind
    if before_run and span.size > 1 and idle_share[1] >= 0.5:
        return earliest  # the run began at a time the meter is usually idle: the leak began it
    with np.errstate(invalid="ignore"):
        like_use = (of_kind & (np.abs(past - seen[:, None]) <= tolerance)).sum(axis=1) / n_of_kind
        alone = np.flatnonzero((np.abs(seen - rate) <= tolerance) & (idle_share > like_use))
    alone = alone[alone > 0]
    if alone.size and alone[0] == 1:
        return earliest  # the leak alone in the very next interval: it began in k
    end = int(alone[0]) if alone.size else span.size
    end = min(end, latest - k + 1)  # it began no later than the interval that raised it
    if rate < config.burst_min_l_h:
        hour = 3600.0 / clock.interval_s
        back = likeliest_onset(seen[:end], past[:end], same_kind[:end], rate, step, tolerance, hour)
        return max(earliest, clock.at(int(span[0]), back * clock.interval_s))
    # continuous flow at a burst's rate is raised as a burst (engine._as_burst): dated as before
    usual = nanmedian_last(past[:end])
    excess = seen[:end] - usual
    deviation = np.abs(past[:end] - usual[:, None])
    known = ~np.isnan(deviation)
    mean_deviation = np.where(known, deviation, 0.0).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
    scale = np.maximum(mean_deviation, tolerance)
    c = _best_step(excess / scale, rate / scale)
    if c == 0 and (before_run or np.isnan(excess[0])):
        return earliest
    share = float(np.clip(np.nan_to_num(excess[c], nan=0.5 * rate) / rate, 0.0, 1.0))
    return max(earliest, clock.at(int(span[c]), -share * clock.interval_s))  # (a usual flow below 0: reverse flow)


def _best_step(excess: np.ndarray, rate: np.ndarray) -> int:
    """The index c at which a step from nothing up to ``rate`` fits ``excess`` best: the least sum
    of |excess| before c and |excess - rate| after it (c itself is partial and fits either; NaN,
    an interval not seen, fits both). The first where several tie."""
    before = np.r_[0.0, np.cumsum(np.nan_to_num(np.abs(excess)))][:-1]
    after = np.r_[np.cumsum(np.nan_to_num(np.abs(excess - rate))[::-1])[::-1], 0.0][1:]
    return int(np.argmin(before + after))


def _leak_last(f: np.ndarray, spread: np.ndarray, lo: int, hi: int, floor: float, step: float, share: float) -> int:
    """The last interval of ``[lo, hi)`` before the flow first fell clearly below the leak's
    ``floor`` (the leak was repaired and the household's use alone kept the run going). Clearly:
    by more than ``share`` of it (or one and a half register steps), as the floor rule allows; a
    leak's flow wanders with the pressure, and a lull of a few per cent is no repair (with the
    register steps alone, a 150 L/h leak wandering by 5% an hour was ended at its first lull, and
    its volume read a quarter of the true one), nor is a single deeper lull: the fall must hold
    for two intervals in a row (or be the run's last)."""
    seg = f[lo:hi]
    with np.errstate(invalid="ignore"):
        below = (seg < floor - floor_tolerance(floor, step, share)) & ~spread[lo:hi]
    fell = np.flatnonzero(below & np.r_[below[1:], True])
    return lo + int(fell[0]) - 1 if fell.size and fell[0] > 0 else hi - 1


def _leak_rate(f: np.ndarray, spread: np.ndarray, lo: int, hi: int, step: float) -> float:
    """Mean of the lowest flows in columns [lo, hi): those within one register step of the tenth
    percentile (the percentile itself where no flow is that near it). A steady leak shows its rate
    in every idle hour (the least flow, and a register step above it); one whose flow wanders
    with the pressure has its least flow in its deepest lull, lower the longer it runs, while a
    tenth of its hours sit near its rate less a standard deviation or so."""
    seg = f[lo:hi][~spread[lo:hi]]
    seg = seg[seg >= 0.5 * step]  # (NaN drops out too)
    if seg.size == 0:
        return step
    low = float(np.percentile(seg, 10.0))
    near = seg[np.abs(seg - low) <= 1.01 * step]
    return float(near.mean()) if near.size else low
