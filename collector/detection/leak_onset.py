"""When a leak began among the meter's own use: the likeliest onset given that use at those hours.

Where a leak begins in hours that carry use, each candidate onset (an interval, and the share of it
the leak ran) leaves a different use behind: what was read before it, what was read less the leak's
rate after it. How likely that use is, hour by hour, against the meter's own flows at those times of
day on the days before weighs the candidates (:func:`likeliest_onset`).

Each hour's use is read with a kernel as wide as the meter's own spread there (:func:`own_spread`):
a robust standard deviation of its flows at that time of day, at least two register steps. A
kernel a quarter of the flow wide, tuned on households, was first tried: a steady shop whose hours
vary by 5% then weighed onsets an hour or two apart nearly alike, and a 127 L/h leak from 11:52 was
dated 1.8 h early (it was taken back out for that). A household's erratic hours have a wide spread,
so their kernels stay wide; a shop's steady ones pin the onset to a few minutes.
"""

from __future__ import annotations

import numpy as np

from collector.detection.common import nanmedian_last, use_density

#: The shares of an interval a leak may have run in the interval it began in (a uniform prior).
_ONSET_SHARES = (np.arange(20) + 0.5) / 20
#: Days of the same kind (weekday or weekend) needed to read a time of day on those days alone.
_SAME_KIND_DAYS = 10
#: A normal distribution's standard deviation over its median absolute deviation.
_MAD_TO_SD = 1.4826


def own_spread(past: np.ndarray) -> np.ndarray:
    """(rows,): how far the meter's flows at each time of day (``past``, one row per time of day,
    NaN unknown) usually stray: their median absolute deviation from the median, as a standard
    deviation (0 where they hardly vary or nothing is known; the density's floor of two register
    steps applies)."""
    usual = nanmedian_last(past)
    deviation = nanmedian_last(np.abs(past - usual[:, None]))
    return np.nan_to_num(_MAD_TO_SD * deviation, nan=0.0)


def days_of_kind(past: np.ndarray, same_kind: np.ndarray) -> np.ndarray:
    """``past`` with the days of the other kind (weekend for a weekday, and the reverse) left out
    where at least ``_SAME_KIND_DAYS`` of its own kind are known: a shop closed on Sundays draws
    nothing at 11:00 on one day in seven, which is no use a Wednesday's 11:00 could hold."""
    own = np.where(same_kind, past, np.nan)
    enough = np.count_nonzero(~np.isnan(own), axis=1) >= _SAME_KIND_DAYS
    return np.where(enough[:, None], own, past)


def likeliest_onset(
    seen: np.ndarray,
    past: np.ndarray,
    same_kind: np.ndarray,
    rate: float,
    step: float,
    tolerance: float,
    hour: float,
) -> float:
    """When a leak of ``rate`` began among the intervals ``seen`` (L/h, NaN not seen), in intervals
    after the end of the first one: the instant most likely within an hour (``hour`` intervals) of
    the true start, given the meter's flows at those times of day on the days before (``past``,
    with whether each day is of the interval's own kind, ``same_kind``).

    Each onset (an interval, and the share of it the leak ran) leaves the meter's use as what was
    read before it, what was read less the rate after it, and less its share in it; use below
    nothing (beyond the rate's tolerance) cannot be. How likely that use is at each time of day
    (:func:`~collector.detection.common.use_density`, its kernel the meter's :func:`own_spread`
    there, on the days of its kind: :func:`days_of_kind`), multiplied over the intervals, weighs the
    onsets; the instant returned is the one with the most weight within an hour of it (the target
    the estimate is held to), not the single likeliest, which can sit at the edge of a broad spread.
    """
    n = seen.size
    known = ~np.isnan(seen)
    x = np.nan_to_num(seen)
    usual_days = days_of_kind(past, same_kind)
    width = own_spread(usual_days)

    def log_use(use: np.ndarray, at: np.ndarray, blur: float = 0.0) -> np.ndarray:
        density = use_density(usual_days[at], np.maximum(use, 0.0), step, np.hypot(width[at], blur))
        return np.where(known[at], np.where(use < -tolerance, -np.inf, np.log(density)), 0.0)

    rows = np.arange(n)
    before = log_use(x, rows)  # no leak yet
    after = log_use(x - rate, rows)  # the leak all through
    # each share stands for the shares of its twentieth of the interval: the use it leaves is known
    # to that twentieth of the rate (a uniform spread's standard deviation)
    within = log_use(
        x[:, None] - rate * _ONSET_SHARES[None, :],
        np.broadcast_to(rows[:, None], (n, _ONSET_SHARES.size)),
        rate / _ONSET_SHARES.size / np.sqrt(12.0),
    )
    prefix = np.r_[0.0, np.cumsum(before)][:-1]  # intervals before c
    suffix = np.r_[np.cumsum(after[::-1])[::-1], 0.0][1:]  # intervals after c
    log_w = (prefix + suffix)[:, None] + within
    # each onset's instant, in intervals from the end of the first one (negative: inside it), in order
    times = (rows[:, None] - _ONSET_SHARES[None, :]).ravel()
    order = np.argsort(times, kind="stable")
    times, log_w = times[order], log_w.ravel()[order]
    if not np.isfinite(log_w).any():
        return 0.0
    cum = np.r_[0.0, np.cumsum(np.exp(log_w - log_w.max()))]
    # the weight within an hour of each instant; among those that hold the most (to a thousandth),
    # the nearest the weighted median: a sharp estimate stays where it is, not an hour off it
    mass = cum[np.searchsorted(times, times + hour, side="right")] - cum[np.searchsorted(times, times - hour)]
    median = times[min(int(np.searchsorted(cum[1:], 0.5 * cum[-1])), times.size - 1)]
    best = np.flatnonzero(mass >= (1.0 - 1e-3) * mass.max())
    return float(times[best[int(np.argmin(np.abs(times[best] - median)))]])
