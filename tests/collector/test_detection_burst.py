"""Bursts behind a customer meter: raised on the first interval that shows them."""

from __future__ import annotations

import numpy as np
import pytest

from collector.detection.alerts import AlertKind
from collector.detection.engine import detect
from tests.collector.test_detection_households import (
    add_flow,
    at_hour,
    block_of,
    business,
    heavy_household,
    household,
    irrigating_household,
)

DAYS = 21


@pytest.mark.parametrize("rate", [400.0, 2500.0])
def test_a_burst_is_raised_within_one_interval_of_its_first_whole_interval(rate: float) -> None:
    rng = np.random.default_rng(21)
    start_h = 12 * 24 + 9.25  # 09:15
    end_h = start_h + 6.0
    uses = {"BURST": add_flow(household(rng, DAYS), start_h, rate, end_h)}
    alerts = [a for a in detect(block_of(uses)) if a.meter_id == "BURST"]
    assert [a.kind for a in alerts] == [AlertKind.BURST]
    burst = alerts[0]
    assert burst.detected_at <= at_hour(11 * 24 + 24 + 11)  # the read closing 10:00–11:00
    assert abs((burst.start - at_hour(start_h)).total_seconds()) <= 3600
    assert burst.rate_l_h == pytest.approx(rate, rel=0.1)
    assert burst.ended_at is not None
    assert abs((burst.ended_at - at_hour(end_h)).total_seconds()) <= 3600
    assert burst.volume_l == pytest.approx(rate * 6.0, rel=0.15)


def test_irrigation_heavy_use_and_shops_are_not_bursts_once_the_meter_is_known() -> None:
    rng = np.random.default_rng(22)
    uses = {}
    for i in range(10):
        uses[f"garden{i}"] = irrigating_household(rng, DAYS)
        uses[f"heavy{i}"] = heavy_household(rng, DAYS)
        uses[f"shop{i}"] = business(rng, DAYS)
    alerts = detect(block_of(uses))
    week = at_hour(7 * 24)
    assert not [a for a in alerts if a.kind is AlertKind.BURST and a.detected_at >= week]


def test_without_history_only_a_very_large_flow_is_a_burst() -> None:
    rng = np.random.default_rng(23)
    uses = {
        "BIG": add_flow(household(rng, 3), 10.0, 3000.0, 14.0),
        "SMALL": add_flow(household(rng, 3), 10.0, 400.0, 11.0),
    }
    bursts = [a for a in detect(block_of(uses)) if a.kind is AlertKind.BURST]
    assert [a.meter_id for a in bursts] == ["BIG"]
