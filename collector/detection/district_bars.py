"""The bar a DMA's balance must clear to be a main burst (:class:`Bars`): the baseline at each time
of day, the excess over it averaged over several windows, and that time of day's own noise; and the
smallest main burst of each day (a share of the inlet's mean flow)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector.detection.balance import DmaBalance
from collector.detection.common import (
    MAD_TO_SIGMA,
    nan_mean,
    nan_median,
    nanmedian_last,
    previous_days,
)
from collector.detection.config import DetectionConfig
from collector.detection.district_steps import explained, nanquantile_last, rolling_median
from collector.detection.flows import DayLayout


def smallest_main_burst_by_day(inlet_l_h: np.ndarray, layout: DayLayout, config: DetectionConfig) -> np.ndarray:
    """(D, days) the smallest step the DMA detector raises on each day: ``dma_min_fraction`` of the
    inlet's mean flow over the ``dma_baseline_days`` before it (NaN before any)."""
    previous = previous_days(layout.to_days(inlet_l_h, np.nan), config.dma_baseline_days)
    return config.dma_min_fraction * nan_mean(previous, axis=(2, 3))  # NaN: no history yet


@dataclass(frozen=True)
class Bars:
    """What the search measures a DMA's balance against, and where it stands over the bar."""

    baseline_days: np.ndarray  # (D, days, P) the slot's baseline each day
    excess: np.ndarray  # (D, T) the balance over it
    means: dict[int, np.ndarray]  # window → (D, T) its median excess over the typical, where over the bar (else NaN)
    sigmas: dict[int, np.ndarray]  # window → (D, T) its noise
    z_score: np.ndarray  # (D, T)

    @property
    def triggered(self) -> np.ndarray:
        """(D, T) over the bar in some window."""
        return np.logical_or.reduce([~np.isnan(m) for m in self.means.values()])

    @classmethod
    def of(
        cls,
        balance: DmaBalance,
        layout: DayLayout,
        floor: np.ndarray,
        config: DetectionConfig,
        taken_out: Sequence[tuple[int, slice, np.ndarray]] = (),
    ) -> Bars:
        """The bars; on the days of each of ``taken_out`` (DMA row, days, flow (T,)), measured on
        the balance without that flow (:class:`LongBursts`): its baseline, its typical level and
        noise over each window, and each window's median reaching back into those days too."""
        losses = balance.losses_l_h
        k = config.dma_baseline_days
        with np.errstate(divide="ignore", invalid="ignore"):  # no noise yet: z of a NaN window
            baseline_days = _slot_quantile(losses, layout, k, config.dma_baseline_quantile)
            baseline_days = np.where(np.isnan(baseline_days), _first_day_level(losses, layout), baseline_days)
            without: list[tuple[int, slice, np.ndarray]] = []  # (row, days, its excess without the flow)
            for d, days, flow in taken_out:
                rest = losses[d : d + 1] - flow
                theirs = _slot_quantile(rest, layout, k, config.dma_baseline_quantile)
                theirs = np.where(np.isnan(theirs), baseline_days[d : d + 1], theirs)
                baseline_days[d, days] = theirs[0, days]
                without.append((d, days, rest - layout.from_days(theirs)))
            excess = losses - layout.from_days(baseline_days)
            seen = np.cumsum(~np.isnan(losses), axis=1) * (balance.interval_s / 86_400.0)
            means: dict[int, np.ndarray] = {}
            sigmas: dict[int, np.ndarray] = {}
            z_score = np.zeros(losses.shape)
            for w in config.dma_windows:
                mean_w = rolling_median(excess, w)
                center, noise = _level_and_noise(mean_w, w, layout, k)
                for d, days, their_excess in without:
                    their_mean = rolling_median(their_excess, w)
                    their_center, their_noise = _level_and_noise(their_mean, w, layout, k)
                    center[d, days], noise[d, days] = their_center[0, days], their_noise[0, days]
                    cols = layout.columns_of(days)
                    mean_w[d, cols] = their_mean[0, cols]
                mean_w = mean_w - center[:, layout.day_of_columns()]
                sigma = layout.from_days(noise)
                unexplained = mean_w - explained(mean_w, rolling_median(balance.still_l_h, w))
                hit = (
                    (unexplained >= config.dma_z * sigma)
                    & (unexplained >= floor)
                    & (seen >= config.dma_min_history_days)
                )
                z_score = np.fmax(z_score, np.where(hit, mean_w / sigma, 0.0))
                means[w] = np.where(hit, mean_w, np.nan)
                sigmas[w] = sigma
        return cls(baseline_days, excess, means, sigmas, z_score)


def _first_day_level(losses: np.ndarray, layout: DayLayout) -> np.ndarray:
    """(D, 1, 1) each DMA's median balance over its first day with any reading (NaN: none), the
    baseline where a slot has no history (the first day). Not the median of the whole block: that
    looked ahead, and the typical level of the first fortnight, measured over that first day's
    excess, moved with how much data came after, so an alert raised from the whole block was not
    raised again from the data cut at its ``detected_at`` (seed 27's DMA003: 1,195 L/h since
    01-06 07:00, raised 01-08 07:00, missing when the block ended then or a day later)."""
    by_day = layout.to_days(losses, np.nan)
    with np.errstate(all="ignore"):
        seen = ~np.isnan(by_day).all(axis=2)  # (D, days)
    first = np.argmax(seen, axis=1)
    rows = by_day[np.arange(losses.shape[0]), first]  # (D, per_day): that day's slots (all NaN: none)
    level = np.array([nan_median(row) for row in rows])
    return level[:, None, None]


def _slot_quantile(rows: np.ndarray, layout: DayLayout, days: int, q: float) -> np.ndarray:
    """(R, days, P) the ``q`` quantile of each slot of ``rows`` (R, T) over the ``days`` days before
    each day (NaN before any)."""
    return nanquantile_last(previous_days(layout.to_days(rows, np.nan), days), q)


def _level_and_noise(mean_w: np.ndarray, w: int, layout: DayLayout, days: int) -> tuple[np.ndarray, np.ndarray]:
    """((D, days) each day's typical level of ``mean_w`` (the balance's excess over ``w`` columns),
    (D, days, P) its noise at each time of day), from the ``days`` before. The noise from changes
    over one window: a burst is one step among them, so it barely inflates the estimate (the spread
    of the levels themselves would include it). Over all the day's hours, or over that time of
    day's own where larger: the inflow's morning rise swings the balance far more than the night
    does, and measured against the whole day's noise, a short window with two of its three hours
    lifted by such swings was a main burst (seeds 11-19: 12 false main bursts, 6 with the hour's
    own noise, none more missed; the 90th percentile time to detect rose by up to 0.9 h).

    The level is at least 0: it lifts the bar where the balance usually stands over its baseline
    (a low quantile, so it usually does), never lowers it under the baseline itself. Under 0, it is
    the level of days measured against a baseline since gone: bursts running since the data began
    are the history's usual level, and once repaired, the days after stand far under their
    baseline for as long as it holds them; once it has come back down, their median excess was
    still far under 0, and the balance back at its own level stood over the bar for days, every
    window of it a main burst measured at 0-115 L/h (seed 23's DMA015: 8 false main bursts; seed
    28's DMA008: 4)."""
    past = previous_days(layout.to_days(mean_w, np.nan), days)
    center = np.maximum(nanmedian_last(past.reshape(*past.shape[:2], -1)), 0.0)  # NaN (no history) stays
    change = np.full_like(mean_w, np.nan)
    change[:, w:] = mean_w[:, w:] - mean_w[:, :-w]
    past_change = np.abs(previous_days(layout.to_days(change, np.nan), days))
    noise = nanmedian_last(past_change.reshape(*past_change.shape[:2], -1))
    at_slot = nanmedian_last(past_change)  # the same slot on each of the days before
    noise = np.fmax(noise[:, :, None], at_slot)
    return center, noise * (MAD_TO_SIGMA / np.sqrt(2.0))
