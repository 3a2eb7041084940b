"""Small helpers the detectors share: times of columns, confidence, building an alert."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collector.detection.alerts import Alert, AlertKind, AlertSource, make_alert_id
from collector.detection.flows import day_of_week
from collector.detection.series import SeriesBlock

#: A median absolute deviation times this is a normal distribution's standard deviation.
MAD_TO_SIGMA = 1.4826


class Clock:
    """Column index ↔ aware UTC datetime for one block's time grid."""

    def __init__(self, timestamps: np.ndarray, interval_s: int, day_offset_s: int = 0) -> None:
        self.seconds = timestamps.astype("datetime64[s]").astype(np.int64)
        self.interval_s = interval_s
        self.day_offset_s = day_offset_s  # local days begin this far ahead of UTC midnight

    @classmethod
    def of(cls, block: SeriesBlock) -> Clock:
        return cls(block.timestamps, block.interval_s, block.day_offset_s)

    def at(self, j: int, shift_s: float = 0.0) -> datetime:
        """The instant of column ``j``, moved by ``shift_s`` seconds (rounded to the second)."""
        return datetime.fromtimestamp(int(self.seconds[j]) + round(shift_s), tz=UTC)

    def column(self, t: datetime) -> int:
        """The first column at or after ``t`` (aware); the number of columns if none is."""
        return int(np.searchsorted(self.seconds, int(t.timestamp())))

    def hours(self, a: datetime, b: datetime) -> float:
        return max((b - a).total_seconds(), 0.0) / 3600.0


def confidence(score: float, threshold: float) -> float:
    """0.5 at the detection threshold, approaching 1 as the evidence grows past it."""
    if threshold <= 0:
        return 1.0
    return float(min(1.0, max(0.0, 1.0 - 0.5 * math.exp(-(score - threshold) / threshold))))


def new_alert(
    kind: AlertKind,
    meter_id: str | None,
    dma: str,
    *,
    start: datetime,
    detected_at: datetime,
    last_seen: datetime,
    ended_at: datetime | None,
    rate_l_h: float,
    volume_l: float,
    confidence: float,
    evidence: tuple[tuple[datetime, datetime], ...],
    source: AlertSource = AlertSource.DETECTOR,
) -> Alert:
    start = min(start, detected_at)
    return Alert(
        alert_id=make_alert_id(kind, meter_id, dma, detected_at, source),
        kind=kind,
        meter_id=meter_id,
        dma=dma,
        start=start,
        detected_at=detected_at,
        last_seen=max(last_seen, detected_at),
        ended_at=ended_at,
        rate_l_h=float(rate_l_h),
        volume_l=float(max(volume_l, 0.0)),
        confidence=confidence,
        evidence=evidence,
        source=source,
    )


def flows_at_same_time(
    f: np.ndarray, spread: np.ndarray, span: np.ndarray, clock: Clock, days: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """One meter's flows ``f`` (T,) at the same time of day as each column of ``span`` on each of
    the ``days`` days before it: ((len(span), days), NaN where unknown or a gap's average in
    ``spread``, 0 for a time of day never seen at all (no use known); and whether each of those
    days is of the same kind, weekday or weekend, as the column's own). None where nothing at all
    is known. What the meter usually draws at that time is the row's median."""
    per_day = 86_400 // clock.interval_s
    earlier = span[:, None] - per_day * np.arange(1, days + 1)[None, :]
    at = np.maximum(earlier, 0)
    past = np.where((earlier >= 0) & ~spread[at], f[at], np.nan)
    weekend = day_of_week((clock.seconds + clock.day_offset_s) // 86_400) >= 5
    same_kind = weekend[at] == weekend[span][:, None]
    never = np.isnan(past).all(axis=1)
    if never.all():
        return None, same_kind
    past[never] = 0.0
    return past, same_kind


#: The meter's use at a time of day, as a density over its flows there on the days before: a
#: Gaussian kernel on each (as wide as two register steps, or a quarter of the flow where that is
#: more, unless the caller gives each time of day its own width), and beside them, with this weight,
#: any flow up to 1,000 L/h alike (use the days before never showed at that time).
_KERNEL_STEPS = 2.0
_KERNEL_SHARE = 0.25
_UNSEEN_USE = 0.3
_UNSEEN_SPAN_L_H = 1000.0


def use_density(
    past: np.ndarray, flow_l_h: np.ndarray, step_flow_l_h: float, width_l_h: np.ndarray | None = None
) -> np.ndarray:
    """How likely the household drew each of ``flow_l_h`` (L/h) at a time of day where it drew
    ``past`` (its flows there on earlier days, NaN unknown). The kernel is ``width_l_h`` wide where
    given (one per flow, at least two register steps), else a quarter of the flow."""
    wide = _KERNEL_SHARE * np.abs(flow_l_h) if width_l_h is None else width_l_h
    width = np.maximum(_KERNEL_STEPS * step_flow_l_h, wide)[..., None]
    z = (past - flow_l_h[..., None]) / width
    seen = ~np.isnan(past)
    kernel = np.where(seen, np.exp(-0.5 * np.where(seen, z, 0.0) ** 2) / width, 0.0)
    density = kernel.sum(axis=-1) / np.maximum(seen.sum(axis=-1), 1) / np.sqrt(2.0 * np.pi)
    return np.asarray((1.0 - _UNSEEN_USE) * density + _UNSEEN_USE / _UNSEEN_SPAN_L_H)


def usual_flow_at_same_time(f: np.ndarray, spread: np.ndarray, span: np.ndarray, clock: Clock, days: int) -> np.ndarray:
    """(len(span),): one meter's median flow at each column's time of day over the ``days`` days
    before it (0 where nothing is known): a shop's busy afternoon, a household's quiet night."""
    past, _ = flows_at_same_time(f, spread, span, clock, days)
    return np.zeros(span.size) if past is None else nanmedian_last(past)


def previous_days(by_day: np.ndarray, days: int) -> np.ndarray:
    """(R, D, ..., days): for each day (axis 1) the same entry on the ``days`` days before it,
    oldest first (NaN-padded before the first day)."""
    pad = np.full((by_day.shape[0], days, *by_day.shape[2:]), np.nan)
    return sliding_window_view(np.concatenate([pad, by_day], axis=1), days, axis=1)[:, : by_day.shape[1]]


def step_up_at(excess: np.ndarray, rate: float) -> int:
    """Where a series stepped up by about ``rate``: a CUSUM's change point, the index after which
    the sum of ``excess - rate / 2`` (NaN as nothing) only rose (0: before its first value; its
    length at most minus one: the step is the last value)."""
    seg = np.nan_to_num(excess - rate / 2.0)
    return min(int(np.argmin(np.r_[0.0, np.cumsum(seg)])), max(excess.size - 1, 0))


def nanmedian_last(x: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN (NaN where all are): a sort and two gathers, much
    faster than ``np.nanmedian`` on many short rows."""
    ordered = np.sort(x, axis=-1)  # NaN sort last
    n = np.count_nonzero(~np.isnan(x), axis=-1)
    lo = np.maximum((n - 1) // 2, 0)[..., None]
    hi = np.maximum(n // 2, 0)[..., None]
    middle = 0.5 * (np.take_along_axis(ordered, lo, -1) + np.take_along_axis(ordered, hi, -1))[..., 0]
    return np.where(n > 0, middle, np.nan)


# numpy's nan-functions warn where a slice has no value, and detection reads NaN there as meant.
# ``warnings.catch_warnings`` silenced them, but it swaps the process's warning filters, which is not
# thread-safe before Python 3.14: detection runs in threads beside VEE, and a warning leaked to the
# demo's console (one thread restored the filters while another was still inside), or one thread's
# "ignore" could be left in place for good. These give the same values with no warning to silence.


def nan_median(x: np.ndarray) -> float:
    """``np.nanmedian`` of all of ``x``; NaN where it has no value."""
    values = np.asarray(x, dtype=np.float64)
    return math.nan if np.isnan(values).all() else float(np.nanmedian(values))


def nan_percentile(x: np.ndarray, q: float) -> float:
    """``np.nanpercentile`` of all of ``x``; NaN where it has no value."""
    values = np.asarray(x, dtype=np.float64)
    return math.nan if np.isnan(values).all() else float(np.nanpercentile(values, q))


def nan_mean(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """``np.nanmean`` over ``axis`` (the same sums, divided the same way); NaN where no value."""
    seen = ~np.isnan(x)
    total = np.where(seen, x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore"):  # 0 / 0: no value
        return np.asarray(total / seen.sum(axis=axis))
