"""Bursts of days taken out of a DMA's history once over (:class:`LongBursts`): a burst running for
days lifts the history the days after it are measured against for two weeks, and one running since
the data began (:func:`_since_the_start`) never rises above the bar at all, so it is found by its
repair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector.detection.balance import DmaBalance
from collector.detection.common import (
    nan_median,
    nanmedian_last,
)
from collector.detection.config import DetectionConfig
from collector.detection.district_bars import Bars
from collector.detection.district_steps import QUIET_RUN, rolling_median
from collector.detection.flows import DayLayout

#: A stretch over the bar in the longest window for this long is a burst of days, taken out of
#: the history of the days after it once over: a shorter one moves a 14-day quantile or median little.
_LONG_H = 48.0


#: Hours either side over which such a burst's flow is smoothed (its median there). Over three, the
#: flow taken out followed part of a burst's daily swing with the pressure, and what was left raised
#: a main burst on the WNTR benchmark.
_SMOOTH_H = 6.0


@dataclass(frozen=True)
class LongBursts:
    """The flow of the bursts of days in each DMA's balance, each from the day after it was over.

    A burst of days lifts the history the days after it are measured against, for as many days as
    that history holds (``dma_baseline_days``): the slot's quantile as baseline, the median as the
    typical level. A smaller burst beginning in them stood below the bar (seed 16: 440 L/h, six
    days after a week of 1,400-2,700 L/h, was never raised).

    Such a burst begins a stretch of at least ``_LONG_H`` in which the longest window stood over the
    bar (:class:`Bars`; gaps shorter than a quiet run bridged), taken half a window earlier (the
    window's median lags a step by that much). It ends where the balance is back at its usual level
    (:func:`_back_to_usual`). Its flow is the balance's excess over the slot's median on the days
    before it began (the bursts before it taken out), smoothed over ``_SMOOTH_H`` either side.
    It counts from the day after its end was known, so each day's history holds only what was known
    when the day began. It needs no alert, nor to tell overlapping bursts apart: it is read from
    the balance alone, up to its end, so the hourly job's windows find it the same (read from the
    alerts, it came out differently from one window to the next, as the alerts of overlapping
    bursts do, and the job opened alerts dated days back). One not back at its usual level by the
    data's end stays in: a lasting change of the level becomes the new usual, as before. A burst
    running since the data began never stands over the bar; it is found by its repair instead
    (:func:`_since_the_start`)."""

    flows: dict[int, list[tuple[int, np.ndarray]]]  # DMA row → (first day it counts for, its flow (T,)), in order

    @classmethod
    def of(
        cls, balance: DmaBalance, bars: Bars, layout: DayLayout, floor: np.ndarray, config: DetectionConfig
    ) -> LongBursts | None:
        window = max(bars.means)
        over = ~np.isnan(bars.means[window])
        long_cols = round(_LONG_H * 3600.0 / balance.interval_s)
        losses = balance.losses_l_h
        flows: dict[int, list[tuple[int, np.ndarray]]] = {}
        for d in range(losses.shape[0]):
            mine = cls._over(balance, bars, layout, config, d, window, long_cols) if over[d].any() else []
            mine += _since_the_start(losses[d], mine, layout, floor[d], balance.interval_s, config)
            if mine:
                flows[d] = sorted(mine, key=lambda item: item[0])
        return cls(flows) if flows else None

    @staticmethod
    def _over(
        balance: DmaBalance,
        bars: Bars,
        layout: DayLayout,
        config: DetectionConfig,
        d: int,
        window: int,
        long_cols: int,
    ) -> list[tuple[int, np.ndarray]]:
        """DMA ``d``'s bursts of days over the bar, each (first day it counts for, its flow (T,))."""
        over = ~np.isnan(bars.means[window][d])
        t = over.shape[0]
        losses = balance.losses_l_h
        mine: list[tuple[int, np.ndarray]] = []
        taken = np.zeros(t)  # the flow of the bursts before, taken out of the next one's usual
        covered_until = -1
        for first, last in _stretches(over, QUIET_RUN):
            lo = max(first - window // 2, 0)
            if last - first + 1 < long_cols or lo < covered_until:
                continue
            day = layout.day_of(lo)
            history = layout.to_days((losses[d] - taken)[None, :], np.nan)[
                0, max(day - config.dma_baseline_days, 0) : day
            ]
            # each slot's median over the days before (NaN: no history yet)
            usual = nanmedian_last(history.T) if day else np.full(layout.per_day, np.nan)
            if np.isnan(usual).all():
                continue
            above = losses[d] - np.nan_to_num(usual)[(layout.offset + np.arange(t)) % layout.per_day]
            end, known = _back_to_usual(above, over, lo, first + long_cols - 1, window)
            if known >= t:
                continue  # still on: a lasting change of the level becomes the new usual
            flow = np.zeros(t)
            flow[lo:end] = _smoothed(above[lo:end], max(1, round(_SMOOTH_H * 3600.0 / balance.interval_s)))
            taken += flow
            covered_until = known
            if layout.day_of(known) + 1 < layout.n_days:
                mine.append((layout.day_of(known) + 1, flow))
        return mine

    def periods(self, n_days: int) -> list[tuple[int, slice, np.ndarray]]:
        """(DMA row, days, the flow taken out of their history): from the day each burst counts
        for, its flow and that of the bursts before it."""
        out = []
        for d, mine in self.flows.items():
            total = np.zeros_like(mine[0][1])
            for i, (day, flow) in enumerate(mine):
                total = total + flow
                until = mine[i + 1][0] if i + 1 < len(mine) else n_days
                if until > day:
                    out.append((d, slice(day, until), total))
        return out


#: Whole days after the repair of a burst running since the start that must stand below the level
#: before it, and that give the level it is measured against.
_SETTLED_DAYS = 2


def _since_the_start(
    losses: np.ndarray,
    found: Sequence[tuple[int, np.ndarray]],
    layout: DayLayout,
    floor: np.ndarray,
    interval_s: int,
    config: DetectionConfig,
) -> list[tuple[int, np.ndarray]]:
    """(the first day it counts for, its flow (T,)) of each burst running since before the detector
    could see a step (the data's first ``dma_min_history_days``). Such a burst never stands over
    the bar: the history it is measured against holds it from the start. It shows only when it is
    repaired, as a fall of the balance below its level (each slot's median over those first days,
    later the level after the repair before): where the median of a quiet run falls below it by
    the day's smallest main burst (``floor``), within ``dma_baseline_days`` (later, the history no
    longer holds it). Its flow, up to that repair, is the balance's excess over its level on the
    whole day after the repair was known (each slot's own), smoothed as a burst of days' is; it
    counts from the day after those, measured without the flow of the bursts of days ``found`` that
    count by then (each's (first day it counts for, flow)): a burst running on over those days is no
    level. Left in, the fortnight after was measured against a
    history lifted by it: after 3,500 L/h running from the data's first hours and 2,300 L/h more
    from day 4 (seed 23's DMA015), a burst of 5% of the inflow beginning two to five days after the
    last repair was missed, or raised 10-15 hours late as two to four bursts."""
    t = losses.shape[0]
    first_days = max(1, int(np.ceil(config.dma_min_history_days)))
    slots = (layout.offset + np.arange(t)) % layout.per_day
    within = min(t, layout.columns_of(slice(0, config.dma_baseline_days)).stop)
    smooth = max(1, round(_SMOOTH_H * 3600.0 / interval_s))
    rest = losses.copy()  # without the flow of those found so far
    level = nanmedian_last(layout.to_days(rest[None, :], np.nan)[0, :first_days].T)  # each slot's
    search_from = layout.columns_of(slice(0, first_days)).stop
    out: list[tuple[int, np.ndarray]] = []
    while search_from < within:
        below = rolling_median((rest[:within] - level[slots[:within]])[None, :], QUIET_RUN)[0]
        with np.errstate(invalid="ignore"):
            dropped = np.flatnonzero(below[search_from:] <= -floor[search_from:within])
        if dropped.size == 0:
            break
        known = search_from + int(dropped[0])
        end = max(known - QUIET_RUN + 1, 0)
        after_day = layout.day_of(known) + 1  # the whole days after the repair was known
        counts_from = after_day + _SETTLED_DAYS
        if counts_from >= layout.n_days:
            break
        # a burst of days is known from the day it counts for (its flow runs before it)
        known_then = rest - sum((flow for day, flow in found if day <= counts_from), np.zeros(t))
        by_day = layout.to_days(known_then[None, :], np.nan)[0, after_day:counts_from]
        usual = nanmedian_last(by_day.T)
        smallest = floor[layout.columns_of(slice(after_day, after_day + _SETTLED_DAYS))]
        if not all(nan_median(level - day) >= nan_median(smallest) for day in by_day):  # NaN: unseen
            # the balance came back: a dip, or its drift met a noisy level (the level of three
            # days, slot by slot), not a repair; looked for again from the day after
            search_from = layout.columns_of(slice(0, after_day + 1)).stop
            continue
        flow = np.zeros(t)
        flow[:end] = _smoothed(known_then[:end] - np.nan_to_num(usual)[slots[:end]], smooth)
        out.append((counts_from, flow))
        rest -= flow
        level = usual
        search_from = layout.columns_of(slice(0, counts_from)).stop
    return out


def _back_to_usual(above: np.ndarray, over: np.ndarray, lo: int, long_at: int, window: int) -> tuple[int, int]:
    """(the column the balance came back to its usual level in, the column that is known at) for
    a burst of days from ``lo``, a stretch over the bar (``over``) long from column ``long_at``:
    the first column from then where the median of a quiet run falls below half the median of
    ``above`` from ``lo`` to half a window before the last column over the bar so far (T, T where
    it has not). Not where the longest window came back under the bar: a burst of a week lifts the
    history it is measured against within days, and the window falls under the bar while it still
    runs. Each column is judged on the data up to it: measured up to the stretch's last column
    over the bar, a stretch joined to a later burst's (less than a quiet run between them) had its
    end searched from that one's, days after the balance came back (seed 24's DMA010: 2,400 L/h
    from 01-17, a new burst at 01-23 08:00 raised an hour later than from the data up to then)."""
    t = above.shape[0]
    quiet = rolling_median(above[None, :], QUIET_RUN)[0]
    last_over = np.maximum.accumulate(np.where(over, np.arange(t), -1))
    half = np.nan
    hi = -1
    for c in range(max(long_at, lo), t):
        until = int(last_over[c]) - window // 2 + 1
        if until != hi:
            hi = until
            half = 0.5 * nan_median(above[lo:hi])  # NaN: nothing seen
        if half > 0 and quiet[c] < half:
            return max(c - QUIET_RUN + 1, lo), c
    return t, t


def _stretches(over: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """(first, last) columns of each run of ``over``, runs less than ``bridge`` apart joined."""
    cols = np.flatnonzero(over)
    if cols.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(cols) > bridge)
    firsts = np.r_[cols[0], cols[breaks + 1]]
    lasts = np.r_[cols[breaks], cols[-1]]
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def _smoothed(x: np.ndarray, half: int) -> np.ndarray:
    """The median of ``x`` over ``half`` columns either side of each (NaN ignored), at least 0."""
    # centred: the trailing median ``half`` columns on
    m = rolling_median(np.concatenate([x, np.full(half, np.nan)])[None, :], 2 * half + 1)[0, half:]
    return np.maximum(np.nan_to_num(m), 0.0)
