"""A meter's profile (its mean use per local hour of the week, which shapes a long gap's estimates)
is learned from measured water only: the meter's own reads, and a person's edits and substitutions,
never VEE's estimates. An interval either of whose reads is an estimate is estimated water
(billing counts it so: ``estimated_m3``), and learning from it made each estimate evidence for the
next ones."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.estimation import meter_profiles
from collector.vee.rules import validate
from collector.vee.series import Series

T0 = datetime(2026, 2, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
HOUR = 3600.0
WEEKS = 4


def _profiles(ts: np.ndarray, volume: np.ndarray, quality: np.ndarray) -> np.ndarray:
    series = Series.from_arrays(["M"], np.zeros(len(ts), np.int64), ts, volume, VeeConfig(), quality=quality)
    return meter_profiles(series, validate(series, VeeConfig(), float(ts.max())), VeeConfig())[0]


def _household() -> tuple[np.ndarray, np.ndarray]:
    """Hourly reads for four weeks: 60 L in the hour to 07:00 each day, nothing else."""
    ts = T0 + np.arange(WEEKS * 168 + 1) * HOUR
    use = np.where(((ts - HOUR - T0) // HOUR) % 24 == 6, 0.060, 0.0)  # the interval closing at 07:00
    volume = np.round(100.0 + np.cumsum(np.r_[0.0, use[1:]]), 3)
    return ts, volume


def test_a_linear_estimate_of_a_morning_gap_is_not_learned_as_the_meter_s_use():
    """A 6-hour gap 04:00-10:00 on the first Monday, estimated linearly by the round after it: 10 L
    in each of its hours. Before, the profile learned those hours as use: Monday 06:00-07:00 at
    47.5 L/h (three measured 60 L and the estimate's 10 L) instead of 60, and 2.5 L/h in the hours
    the household uses nothing; a later gap's estimates followed it."""
    ts, volume = _household()
    quality = np.full(len(ts), "actual", dtype="<U11")
    gap = (ts > T0 + 4 * HOUR) & (ts < T0 + 10 * HOUR)
    quality[gap] = "estimated"
    volume = volume.copy()
    volume[gap] = np.round(np.interp(ts[gap], [T0 + 4 * HOUR, T0 + 10 * HOUR], [100.0, 100.06]), 3)
    profile = _profiles(ts, volume, quality)
    assert profile[6] == pytest.approx(0.06)  # Monday, the hour to 07:00: three Mondays measured, the fourth estimated
    assert profile[[4, 5, 7, 8, 9]] == pytest.approx([0.0] * 5, abs=1e-12)


def test_a_person_s_edit_and_substitution_are_learned_as_measured_water():
    """A person's edit or substitution is evidence, as the meter's own read is."""
    ts, volume = _household()
    quality = np.full(len(ts), "actual", dtype="<U11")
    quality[7] = "edited"  # Monday 07:00, the read closing the busy hour
    quality[24 + 7] = "substituted"  # Tuesday 07:00
    volume = volume.copy()
    volume[7:] += 0.010  # the person's reading of Monday 07:00 is 10 L higher, and so on from there
    volume[24 + 7 :] += 0.020
    profile = _profiles(ts, volume, quality)
    assert profile[6] == pytest.approx((0.070 + 3 * 0.060) / 4)  # the edited hour counts, as edited
    assert profile[24 + 6] == pytest.approx((0.080 + 3 * 0.060) / 4)


@settings(max_examples=80, deadline=None)
@given(
    rates=st.lists(st.floats(0.0, 0.5), min_size=24, max_size=24),
    gaps=st.lists(st.tuples(st.integers(1, WEEKS * 168 - 30), st.integers(2, 28)), max_size=6),
    shape=st.lists(st.floats(0.0, 1.0), min_size=30, max_size=30),
)
def test_estimates_change_no_profile(rates, gaps, shape):
    """A meter's profile with its gaps estimated, however the estimates lie, is the profile with the
    gaps left open: estimates add nothing to what it learns."""
    ts = T0 + np.arange(WEEKS * 168 + 1) * HOUR
    hour_of_day = ((ts - HOUR - T0) // HOUR).astype(int) % 24
    volume = np.round(100.0 + np.cumsum(np.r_[0.0, np.array(rates)[hour_of_day[1:]]]), 3)
    quality = np.full(len(ts), "actual", dtype="<U11")
    estimated = volume.copy()
    for first, length in gaps:
        inside = np.arange(first, min(first + length, len(ts) - 1))
        quality[inside] = "estimated"
    for start, stop in _runs(quality == "estimated"):
        low, high = volume[start - 1], volume[stop]
        cumulative = np.sort(np.array(shape[: stop - start]) if stop - start <= 30 else np.linspace(0, 1, stop - start))
        estimated[start:stop] = np.round(low + (high - low) * cumulative, 3)
    measured = quality != "estimated"
    with_estimates = _profiles(ts, estimated, quality)
    without = _profiles(ts[measured], volume[measured], quality[measured])
    np.testing.assert_array_equal(with_estimates, without)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
