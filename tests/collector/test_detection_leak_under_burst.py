"""A burst on a leak: its rate is all the meter carries above its ordinary use, whatever the leak's age.

The burst's rate is its excess over the meter's usual flow at that time of day, the median of the
14 days before. Before, a leak flowing on more than half of those days was in that median and the
burst's rate left it out (a 500 L/h burst on a 20 L/h leak of 20, 13 or 10 days: 503.8, 504.0 and
505.5 L/h), while a younger leak's was in the rate (a leak of 5 days: 516.8 L/h); billing, counting
each moment at the largest rate flowing, lost the old leak's water under the burst. Now all hold the
leak (523.8, 524.0, 525.5 and 516.8 L/h).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from collector.detection.alerts import Alert, AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.flows import interval_flows
from collector.detection.leak_under_burst import leak_held_in_usual
from tests.collector.test_detection_households import add_flow, at_hour, block_of, household

LEAK_L_H, BURST_L_H = 20.0, 500.0
BURST_FROM_H = 20 * 24 + 9.25


@pytest.mark.parametrize("leak_from_day", [0, 7, 10, 15])
def test_a_burst_s_rate_holds_the_leak_under_it_however_old_the_leak(leak_from_day: int) -> None:
    use = add_flow(household(np.random.default_rng(7), 28), leak_from_day * 24.0, LEAK_L_H)
    use = add_flow(use, BURST_FROM_H, BURST_L_H, BURST_FROM_H + 6.0)
    alerts = [a for a in detect(block_of({"M": use})) if a.meter_id == "M"]
    (leak,) = [a for a in alerts if a.kind is AlertKind.LEAK]
    (burst,) = [a for a in alerts if a.kind is AlertKind.BURST]
    assert leak.rate_l_h == pytest.approx(LEAK_L_H, abs=1.0)
    assert burst.ended_at is not None
    # before, a leak of 20, 13 or 10 days (in the median) left it out: 503.8, 504.0, 505.5 L/h
    assert burst.rate_l_h == pytest.approx(BURST_L_H + LEAK_L_H, abs=10.0)
    assert burst.volume_l == pytest.approx(burst.rate_l_h * (burst.ended_at - burst.start).total_seconds() / 3600)


def test_a_burst_without_a_leak_is_measured_as_before() -> None:
    use = add_flow(household(np.random.default_rng(7), 28), BURST_FROM_H, BURST_L_H, BURST_FROM_H + 6.0)
    (burst,) = [a for a in detect(block_of({"M": use})) if a.kind is AlertKind.BURST]
    assert burst.rate_l_h == pytest.approx(BURST_L_H, abs=10.0)


def _episode(kind: AlertKind, start_h: float, end_h: float, rate: float) -> Alert:
    return Alert(
        alert_id=f"{kind.value}/M",
        kind=kind,
        meter_id="M",
        dma="D1",
        start=at_hour(start_h),
        detected_at=at_hour(end_h),
        last_seen=at_hour(end_h),
        rate_l_h=rate,
        volume_l=rate * (end_h - start_h),
        confidence=0.9,
        evidence=(),
        ended_at=at_hour(end_h),
    )


@settings(max_examples=60, deadline=None)
@example(7, 0, 20.0, 0, 1)  # a leak begun 7 days to the hour before the burst: the hour before is not the burst's
@example(8, 0, 20.0, 3, 2)
@given(st.integers(1, 14), st.integers(-8, 8), st.floats(1.0, 200.0), st.integers(0, 12), st.integers(1, 6))
def test_the_usual_holds_the_leak_where_it_flowed_on_more_than_half_the_days_before(
    days_before: int, hours_off: int, rate: float, burst_from: int, hours: int
) -> None:
    """Against a count of days: at each of the burst's hours the usual flow (a median over the 14 days
    before) holds the leak's rate where the leak flowed through that hour on more than 7 of them,
    half where on 7, none where on fewer; the burst is given the median of that over its hours. (Leaks
    begun about a whole number of days before the burst, the hours its usual turns on.)"""
    days, burst_h = 28, 20 * 24 + 10 + burst_from
    leak_from_h = burst_h - 24 * days_before + hours_off
    use = add_flow(np.zeros(days * 24), float(leak_from_h), rate)
    block = block_of({"M": use})
    config = DetectionConfig()
    burst = _episode(AlertKind.BURST, burst_h, burst_h + hours, 800.0)
    held = leak_held_in_usual(burst, _episode(AlertKind.LEAK, leak_from_h, days * 24, rate), block,
                              interval_flows(block, config), 0, config.burst_history_days)  # fmt: skip
    by_hour = []
    for column in range(burst_h + 1, burst_h + hours + 1):  # the burst's intervals, each ending at that read
        flowing = sum(column - 24 * k - 1 >= leak_from_h for k in range(1, 15))
        by_hour.append(rate if flowing > 7 else rate / 2 if flowing == 7 else 0.0)
    assert held == pytest.approx(float(np.median(by_hour)))
