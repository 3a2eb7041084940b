"""Leaks behind bulk meters (blocks of flats): their lowest flow stepping up, not continuous flow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from collector.detection.alerts import AlertKind
from collector.detection.bulk import trailing_min
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.series import SeriesBlock
from tests.collector.test_detection_households import add_flow, at_hour, block_of, flats

DAYS = 28
HOUR = 3600.0


@given(
    x=arrays(np.float64, (3, 40), elements=st.one_of(st.floats(0.0, 1e4), st.just(np.nan))),
    window=st.integers(1, 45),
)
@settings(max_examples=200)
def test_the_trailing_minimum_is_the_least_of_the_last_values_known(x: np.ndarray, window: int) -> None:
    got = trailing_min(x, window)
    for j in range(x.shape[1]):
        if j < window - 1:
            assert np.isnan(got[:, j]).all()
            continue
        seen = x[:, j - window + 1 : j + 1]
        for m in range(x.shape[0]):
            known = seen[m][~np.isnan(seen[m])]
            assert (np.isnan(got[m, j]) and known.size == 0) or got[m, j] == known.min()


def _blocks(seed: int, leak: tuple[float, float, float | None] | None = None) -> SeriesBlock:
    """Twelve blocks of 20–100 households on bulk meters, the first with ``leak`` (L/h, from hour,
    to hour or None)."""
    rng = np.random.default_rng(seed)
    # and their common parts, 15 L/h day and night
    uses = {f"B{i:02d}": flats(rng, DAYS, n) + 15.0 for i, n in enumerate([20, 40, 60, 100] * 3)}
    if leak is not None:
        rate, start_h, end_h = leak
        uses["B00"] = add_flow(uses["B00"], start_h, rate, end_h)
    block = block_of(uses)
    return dataclasses.replace(block, bulk=np.ones(block.n_meters, dtype=bool))


def test_blocks_of_flats_never_idle_raise_nothing() -> None:
    """Never a quiet hour in four weeks, never a leak: the household rule has nothing to say here,
    and the blocks' lowest flows hold steady."""
    block = _blocks(81)
    assert (np.diff(block.volume_m3, axis=1) > 0).all()
    assert detect(block) == []


@pytest.mark.parametrize(("rate", "start_h"), [(40.0, 15 * 24 + 14.2), (120.0, 16 * 24 + 3.5)])
def test_a_leak_behind_a_block_is_raised_within_two_nights_with_its_rate(rate: float, start_h: float) -> None:
    """A leak behind twenty flats (40 L/h is a tenth of what they draw): the block's lowest flow over
    three nights stands above the highest of its two weeks before, and the leak is raised with its
    rate, and where it began."""
    (alert,) = detect(_blocks(82, (rate, start_h, None)))
    assert alert.meter_id == "B00" and alert.kind is AlertKind.LEAK
    assert alert.detected_at <= at_hour(start_h + 3 * 24 + 1)
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 10 * HOUR
    assert alert.rate_l_h == pytest.approx(rate, rel=0.15)
    assert alert.ended_at is None


def test_a_repaired_leak_behind_a_block_ends_and_is_not_raised_again() -> None:
    start_h, end_h = 14 * 24 + 22.0, 19 * 24 + 9.0
    (alert,) = detect(_blocks(83, (60.0, start_h, end_h)))
    assert alert.meter_id == "B00"
    assert alert.ended_at is not None
    assert abs((alert.ended_at - at_hour(end_h)).total_seconds()) <= 18 * HOUR
    assert alert.volume_l == pytest.approx(60.0 * (end_h - start_h), rel=0.25)


def test_a_leak_behind_a_block_is_raised_from_the_data_up_to_its_detection() -> None:
    block = _blocks(84, (50.0, 13 * 24 + 11.0, None))
    (alert,) = detect(block)
    (early,) = detect(block.until(alert.detected_at))
    assert early.alert_id == alert.alert_id
    assert early.start == alert.start


def test_a_small_block_idle_most_nights_is_also_held_to_the_household_rule() -> None:
    """Four households behind one meter, idle some hours of most days: an 8 L/h leak shows as
    continuous flow, as behind a household, and is raised in under two days, once; its nights alone
    (under ``bulk_min_l_h``) would not raise it at all."""
    rng = np.random.default_rng(85)
    uses = {f"S{i}": flats(rng, DAYS, 4) for i in range(8)}
    start_h = 15 * 24 + 13.3
    uses["S0"] = add_flow(uses["S0"], start_h, 8.0)
    block = dataclasses.replace(block_of(uses), bulk=np.ones(len(uses), dtype=bool))
    (alert,) = detect(block)
    assert alert.meter_id == "S0" and alert.kind is AlertKind.LEAK
    assert alert.detected_at <= at_hour(start_h + 40)
    assert alert.rate_l_h == pytest.approx(8.0, rel=0.15)
    assert detect(block, DetectionConfig(bulk_idle_share=2.0)) == []  # never idle enough
