"""Pieces the main-burst detector (:mod:`collector.detection.district`) shares among its parts:
rolling medians and quantiles over a DMA's balance, where a step began, and the run lengths its rules
count in intervals."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collector.detection.common import (
    nanmedian_last,
    step_up_at,
)
from collector.detection.config import DetectionConfig


def nanquantile_last(x: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile over the last axis ignoring NaN (NaN where all are), interpolated between
    the two nearest values as ``np.nanquantile`` does: a sort and two gathers."""
    ordered = np.sort(x, axis=-1)  # NaN sort last
    n = np.count_nonzero(~np.isnan(x), axis=-1)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    frac = (pos - lo)[..., None]
    low = np.take_along_axis(ordered, lo[..., None], -1)
    high = np.take_along_axis(ordered, hi[..., None], -1)
    value = (low + frac * (high - low))[..., 0]
    return np.where(n > 0, value, np.nan)


def rolling_median(x: np.ndarray, window: int) -> np.ndarray:
    """Median of the last ``window`` columns up to each column (robust to one-interval spikes:
    a customer's missing read whose estimate is far off moves it little). (D, T) with D small."""
    padded = np.concatenate([np.full((x.shape[0], window - 1), np.nan), x], axis=1)
    return nanmedian_last(sliding_window_view(padded, window, axis=1))  # NaN for windows without data


#: A burst is over when the median of this many intervals falls below half its rate …
QUIET_RUN = 6


#: … and also at this many intervals in a row below half its rate: a repair a few hours
#: before another burst begins leaves too short a quiet run for the median (three hours between
#: an 850 L/h repair and a 3,250 L/h burst kept the first open until the second's repair).
SHORT_END = 3


#: The rate an episode measured at no flow is given (shares of it are taken); such an episode is not raised.
NO_FLOW_L_H = 1e-9


def explained(step: np.ndarray, hiding: np.ndarray) -> np.ndarray:
    """The part of a step that a still customer register explains: what it may be hiding, where that
    is at least half the step (a stuck shop's day of use), else nothing (the many households still at
    any hour, each far smaller than a main burst, leave the detector's reach alone)."""
    with np.errstate(invalid="ignore"):
        return np.where(hiding >= 0.5 * step, hiding, 0.0)


def step_start(excess: np.ndarray, j: int, rate: float, config: DetectionConfig, not_before: int = 0) -> int:
    """Where the series stepped up by about ``rate`` before ``j``: a CUSUM's change point, not
    before ``not_before`` (the end of the burst before: its excess would draw the point back to it)."""
    lo = max(0, not_before, j - max(config.dma_windows) * 2)
    return lo + step_up_at(excess[lo : j + 1], rate)
