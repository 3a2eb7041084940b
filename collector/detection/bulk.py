"""A leak behind a bulk meter: its lowest flow stepping up and staying up.

A bulk meter (a block of flats, an estate: :attr:`SeriesBlock.bulk`) is seldom or never idle, so
the household rule, continuous flow, reads its ordinary use as a leak. What a leak behind it changes
is its lowest flow: the quietest hour of every night carries the leak too. This is minimum night
flow analysis, as for a district (:mod:`collector.detection.district`), on one meter. Its lowest
flow over the last ``bulk_window_days`` (three nights) is compared with its lowest flow of each of
the ``bulk_history_days`` whole days before that window; a leak is raised where it is above

* their median by ``bulk_z`` deviations (MAD as sigma), and
* the highest of them, by ``bulk_min_fraction`` of the meter's mean flow and ``bulk_min_l_h``:

a block of a few dozen households is quiet at 3 a.m. on most nights, and on some it is not. Three
nights above the highest of two weeks' is rare without a leak: on one sample of the WNTR
benchmark's 5,232 blocks, two nights raised 111 false leaks (7.4 per 10,000 meter-days), three 4
(0.27) once the history holds ``bulk_min_history_days``. The price is time: a leak is raised about
three days after it began.

Its rate is what the lowest flow of each day gained. It began after the last interval below the
least of those nights and half the rate, where the flow rose above the meter's usual flow at that
time of day (a CUSUM's change point, each hour's excess held within a rate of the leak's two levels:
a block's busy hours swing by many times a small leak); it ended where the flow fell back, before
the first interval below the usual night and half the rate. Everything is known at the read that
shows it: the window looks back only.

A small block, idle on most days (``bulk_idle_share``), is also held to the household rule
(:mod:`leak`, continuous flow): its quiet hours find leaks its nights cannot tell from their own
noise, sooner; where both raise one leak, the alert raised first stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import (
    MAD_TO_SIGMA,
    Clock,
    confidence,
    nanmedian_last,
    new_alert,
    previous_days,
    step_up_at,
    usual_flow_at_same_time,
)
from collector.detection.config import DetectionConfig
from collector.detection.flows import DayLayout, Flows
from collector.detection.leak import detect_leaks
from collector.detection.series import SeriesBlock


def trailing_min(x: np.ndarray, window: int) -> np.ndarray:
    """(M, T): the least of each row's last ``window`` values (NaN ignored; NaN until ``window``
    columns exist, or where all are NaN), by doubling spans: O(T log window), no (M, T, window)."""
    out = np.full_like(x, np.nan)
    t = x.shape[1]
    if window < 1 or t < window:
        return out
    table, span = x, 1  # table[:, j]: the least of x[:, j - span + 1 : j + 1]
    while span * 2 <= window:
        longer = table.copy()
        longer[:, span:] = np.fmin(table[:, span:], table[:, :-span])
        table, span = longer, span * 2
    shift = window - span  # two spans of ``span`` cover the window
    out[:, window - 1 :] = np.fmin(table[:, window - 1 :], table[:, window - 1 - shift : t - shift])
    return out


@dataclass(frozen=True)
class _Nights:
    """(M, T) each, for the window ending at each column: the meter's daily lowest flows over the
    ``bulk_history_days`` whole days before the window began, as their median (the usual one),
    deviation (MAD, as sigma), least and highest (a block of a few dozen households is quiet at
    3 a.m. on most nights, and on some it is not); the meter's mean flow over those days; and how
    many of them were known."""

    usual: np.ndarray
    deviation: np.ndarray
    least: np.ndarray
    highest: np.ndarray
    mean_flow: np.ndarray
    days_known: np.ndarray

    @classmethod
    def before_windows(cls, f: np.ndarray, layout: DayLayout, window: int, config: DetectionConfig) -> _Nights:
        by_day = layout.to_days(f, fill=np.nan)
        seen = np.count_nonzero(~np.isnan(by_day), axis=2)
        whole = seen >= 0.75 * layout.per_day  # a day mostly read: its lowest flow means something
        with np.errstate(invalid="ignore"):
            lowest = np.where(whole, np.fmin.reduce(by_day, axis=2), np.nan)
            mean = np.where(whole, np.nansum(by_day, axis=2) / np.maximum(seen, 1), np.nan)
        earlier, earlier_mean = (
            previous_days(lowest, config.bulk_history_days),
            previous_days(mean, config.bulk_history_days),
        )
        usual = nanmedian_last(earlier)
        known = np.count_nonzero(~np.isnan(earlier), axis=2)
        with np.errstate(invalid="ignore"):
            mean_flow = np.nansum(earlier_mean, axis=2) / np.maximum(known, 1)
        # the window ending at column j began in the day of column j - window + 1: the days before it
        day = layout.day_of_columns() - (window - 1 + layout.per_day - 1) // layout.per_day
        day = np.clip(day, 0, lowest.shape[1] - 1)
        return cls(
            usual=usual[:, day],
            deviation=(MAD_TO_SIGMA * nanmedian_last(np.abs(earlier - usual[:, :, None])))[:, day],
            least=np.fmin.reduce(earlier, axis=2)[:, day],
            highest=np.fmax.reduce(earlier, axis=2)[:, day],
            mean_flow=mean_flow[:, day],
            days_known=known[:, day],
        )


def detect_bulk_leaks(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    """Leak alerts on the bulk meters of ``block`` (the others are left to :mod:`leak`): by their
    minimum night flow, and by continuous flow where the meter was idle on most days before."""
    rows = np.flatnonzero(block.is_bulk)
    if rows.size == 0 or block.n_intervals < 2:
        return []
    part, part_flows = block.take(rows), flows.take(rows)
    by_night = _by_minimum_night_flow(part, part_flows, config)
    by_idle = _continuous_flow_where_idle_before(part, part_flows, config)
    return _first_raised(by_night + by_idle)


def _continuous_flow_where_idle_before(part: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    """The household rule's leaks on the bulk meters that were idle (an interval without flow) on
    at least ``bulk_idle_share`` of the days before the leak began (``bulk_history_days`` of them,
    at least ``bulk_min_history_days`` known): a small block's quiet hours say what a household's do,
    and find a leak a tenth of its flow or less, below what its nights can tell. A block never idle
    is left to its nights: its continuous flow is its use."""
    layout = DayLayout.of(part)
    with np.errstate(invalid="ignore"):
        idle_day = layout.to_days(flows.still().astype(np.float64), fill=0.0).max(axis=2) > 0
        read_day = layout.to_days((~np.isnan(flows.flow_l_h)).astype(np.float64), fill=0.0).sum(axis=2) > 0
    clock = Clock.of(part)
    row_of = {meter: i for i, meter in enumerate(part.meter_ids.tolist())}
    kept = []
    for alert in detect_leaks(part, flows, config):
        m, day = row_of[str(alert.meter_id)], layout.day_of(min(clock.column(alert.start), part.n_intervals - 1))
        days = slice(max(0, day - config.bulk_history_days), day)
        known = int(read_day[m, days].sum())
        if known >= config.bulk_min_history_days and idle_day[m, days].sum() >= config.bulk_idle_share * known:
            kept.append(alert)
    return kept


def _first_raised(alerts: list[Alert]) -> list[Alert]:
    """One alert per leak: where alerts of one meter overlap, the one raised first."""
    kept: list[Alert] = []
    for alert in sorted(alerts, key=lambda a: (a.detected_at, a.alert_id)):
        if not any(k.meter_id == alert.meter_id and k.overlaps(alert) for k in kept):
            kept.append(alert)
    return kept


def _by_minimum_night_flow(part: SeriesBlock, part_flows: Flows, config: DetectionConfig) -> list[Alert]:
    """The leaks whose rate the meter's lowest flow over ``bulk_window_days`` shows (see above)."""
    f = np.where(part_flows.spread, np.nan, part_flows.flow_l_h)  # a gap's average is no flow anyone saw
    layout = DayLayout.of(part)
    window = max(1, round(config.bulk_window_days * layout.per_day))
    lowest = trailing_min(f, window)
    known = np.cumsum(~np.isnan(f), axis=1)
    in_window = known - np.concatenate([np.zeros((f.shape[0], window)), known[:, :-window]], axis=1)
    lowest[in_window < 0.75 * window] = np.nan  # too few reads in the window for its least to be low
    nights = _Nights.before_windows(f, layout, window, config)
    margin = np.maximum(config.bulk_min_fraction * nights.mean_flow, config.bulk_min_l_h)
    need = np.maximum(config.bulk_z * nights.deviation, margin)
    with np.errstate(invalid="ignore"):
        # above the usual lowest flow by the noise, and above the highest of those days, every night
        fired = (lowest - nights.usual > need) & (lowest > nights.highest + margin)
        fired &= nights.days_known >= config.bulk_min_history_days
    episodes = _Episodes(part, part_flows, f, Clock.of(part), window, config)
    alerts: list[Alert] = []
    for m in np.flatnonzero(fired.any(axis=1)).tolist():
        j, previous_end = 0, 0
        while (hits := np.flatnonzero(fired[m, j:])).size:
            j += int(hits[0])
            alert, end = episodes.of(m, j, previous_end, nights, float(lowest[m, j]), float(need[m, j]))
            alerts.append(alert)
            # on again only once the window has left this one: its nights still sit in it
            quiet = np.flatnonzero(~fired[m, end:])
            if quiet.size == 0:
                break
            j, previous_end = end + int(quiet[0]), end
    return alerts


class _Episodes:
    """A leak's figures, from the column that raised it."""

    def __init__(
        self, part: SeriesBlock, flows: Flows, f: np.ndarray, clock: Clock, window: int, config: DetectionConfig
    ) -> None:
        self.part, self.flows, self.f, self.clock, self.window, self.config = part, flows, f, clock, window, config
        self.per_day = 86_400 // part.interval_s

    def of(self, m: int, j: int, not_before: int, nights: _Nights, lowest: float, need: float) -> tuple[Alert, int]:
        """The leak raised at ``j`` (the window's ``lowest`` flow): its alert and the first column
        after it."""
        f, t = self.f[m], self.f.shape[1]
        usual, least = float(nights.usual[m, j]), float(nights.least[m, j])
        rate = lowest - usual
        with np.errstate(invalid="ignore"):
            # before it: below the least of the nights before and half of it (all of it never was);
            # after it: back below the usual night and half of it
            low_before = np.flatnonzero(f[:j] < least + 0.5 * rate)
            low_after = np.flatnonzero(f[j + 1 :] < usual + 0.5 * rate)
        end = j + 1 + int(low_after[0]) if low_after.size else t  # the first interval after it
        # it began after the last interval without it, where the flow rose above the meter's usual
        # flow at that time of day (within the window that raised it, and a day before: the
        # window's least may be from its second night)
        lo = max(j - self.window - self.per_day, not_before, int(low_before[-1]) if low_before.size else 0)
        usual_at = self._usual_at_time_of_day(m, lo)
        first = lo + step_up_at(self._bounded(f[lo : j + 1] - usual_at(lo, j + 1), rate), rate)  # the last without it
        # its rate: what the lowest flow of each day of it gained, over all of it
        with np.errstate(invalid="ignore"):
            gained = trailing_min(f[None, first + 1 : end], min(self.per_day, end - first - 1))[0] - usual
        seen = gained[~np.isnan(gained)]
        if seen.size:
            rate = float(np.median(seen))
        last, ended_at = end - 1, None
        if end < t:
            # it ended where the flow fell back to the usual at that time of day, within the day
            # before the first interval without it (at night, with hourly reads)
            lo_end = max(j, end - self.per_day)
            last = lo_end + step_up_at(
                rate - self._bounded(f[lo_end : end + 1] - usual_at(lo_end, end + 1), rate), rate
            )
            ended_at = self.clock.at(last)
        start = self.clock.at(first)
        detected_at = self.clock.at(int(self.flows.known_idx[m, j]))
        alert = new_alert(
            AlertKind.LEAK,
            str(self.part.meter_ids[m]),
            str(self.part.dma[m]),
            start=start,
            detected_at=detected_at,
            last_seen=self.clock.at(last),
            ended_at=ended_at,
            rate_l_h=rate,
            volume_l=rate * self.clock.hours(start, self.clock.at(last)),
            confidence=confidence(rate, need),
            evidence=((self.clock.at(max(j - self.window + 1, 0)), detected_at),),
        )
        return alert, end

    @staticmethod
    def _bounded(excess: np.ndarray, rate: float) -> np.ndarray:
        """The flows' excess over the usual, each hour held to within a rate of the leak's two
        levels: a block's busy hours swing by many times a small leak's rate, and would decide
        where it began."""
        return np.clip(excess, -rate, 2.0 * rate)

    def _usual_at_time_of_day(self, m: int, before: int) -> Callable[[int, int], np.ndarray]:
        """``usual_at(lo, hi)``: the meter's median flow at the time of day of each column in
        [lo, hi), over the ``bulk_history_days`` days before column ``before`` (0 where unknown)."""
        day = np.arange(max(before - self.per_day, 0), before)
        profile = usual_flow_at_same_time(
            self.f[m], self.flows.spread[m], day, self.clock, self.config.bulk_history_days
        )

        def usual_at(lo: int, hi: int) -> np.ndarray:
            if profile.size == 0:
                return np.zeros(hi - lo)
            return profile[(np.arange(lo, hi) - int(day[0])) % profile.size]

        return usual_at
