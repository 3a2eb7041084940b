"""Registers running backwards (reverse flow), stopped (stuck), or reset (replacement, rollover)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from collector.detection.alerts import AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from tests.collector.test_detection_households import at_hour, away, block_of, household, registers

DAYS = 21


def _kinds(alerts: list, meter: str) -> list[AlertKind]:
    return [a.kind for a in alerts if a.meter_id == meter]


def test_reverse_flow_is_raised_with_its_rate_and_volume() -> None:
    rng = np.random.default_rng(31)
    use = household(rng, DAYS)
    start_h, end_h = 10 * 24 + 1.5, 10 * 24 + 5.5  # 01:30–05:30, nobody using water
    use[int(start_h) : int(end_h) + 1] = 0.0
    hours = np.arange(use.size)
    back = np.clip(np.minimum(hours + 1, end_h) - np.maximum(hours, start_h), 0, 1) * 30.0
    alerts = detect(block_of({"BACK": use - back}))
    (reverse,) = [a for a in alerts if a.meter_id == "BACK"]
    assert reverse.kind is AlertKind.REVERSE_FLOW
    assert reverse.detected_at <= at_hour(start_h + 1.5)
    assert reverse.rate_l_h == pytest.approx(30.0, rel=0.1)
    assert reverse.volume_l == pytest.approx(120.0, rel=0.05)
    assert abs((reverse.start - at_hour(start_h)).total_seconds()) <= 3600
    assert reverse.ended_at is not None


def test_replacement_and_rollover_are_not_reverse_flow() -> None:
    rng = np.random.default_rng(32)
    uses = np.stack([household(rng, DAYS), household(rng, DAYS)])
    volume = registers(uses)
    volume[0, 200:] -= volume[0, 200] - 0.003  # a new meter, starting near zero
    volume[1] = registers(uses[1:2], initial_m3=99_999.5)[0] % 100_000.0  # five-digit register wraps
    assert np.any(np.diff(volume[1]) < -90_000)
    alerts = detect(block_of({"NEW": uses[0], "WRAP": uses[1]}, volume=volume))
    assert not [a for a in alerts if a.kind is AlertKind.REVERSE_FLOW]


def test_a_stuck_register_is_raised_after_seven_days_and_a_holiday_is_not() -> None:
    rng = np.random.default_rng(33)
    stuck = household(rng, DAYS)
    uses = {"STUCK": stuck, "AWAY": away(household(rng, DAYS), 6, 11), "OK": household(rng, DAYS)}
    volume = registers(np.stack(list(uses.values())))
    stop = 8 * 24 + 13
    volume[0, stop:] = volume[0, stop]  # the register stops; the water does not
    alerts = detect(block_of(uses, volume=volume))
    (alert,) = [a for a in alerts if a.kind is AlertKind.STUCK]
    assert alert.meter_id == "STUCK"
    assert at_hour(stop - 3) <= alert.start <= at_hour(stop)
    assert alert.detected_at - alert.start >= at_hour(7 * 24) - at_hour(0)
    assert alert.detected_at <= at_hour(stop + 7 * 24 + 1)
    daily_l = stuck[: 8 * 24].sum() / 8
    assert alert.rate_l_h == pytest.approx(daily_l / 24, rel=0.3)


def test_stuck_days_is_configurable_and_a_meter_never_used_is_not_stuck() -> None:
    rng = np.random.default_rng(34)
    uses = {"AWAY": away(household(rng, DAYS), 6, 11), "EMPTY": np.zeros(DAYS * 24)}
    block = block_of(uses)
    assert not [a for a in detect(block) if a.kind is AlertKind.STUCK]
    three_days = dataclasses.replace(DetectionConfig(), stuck_days=3.0)
    (alert,) = [a for a in detect(block, three_days) if a.kind is AlertKind.STUCK]
    assert alert.meter_id == "AWAY" and alert.ended_at is not None  # resolved on return


def test_the_meters_own_alarm_bits_pass_through_as_alerts() -> None:
    from collector.detection.alerts import AlertSource

    rng = np.random.default_rng(35)
    block = block_of({"A": household(rng, 5), "B": household(rng, 5)})
    tamper = np.zeros(block.volume_m3.shape, dtype=bool)
    tamper[1, 30:40] = True  # meter B, 30:00–39:00
    strange = np.ones(block.volume_m3.shape, dtype=bool)
    block = dataclasses.replace(block, alarms={"tamper": tamper, "not_an_alarm_we_know": strange})
    (alert,) = [a for a in detect(block) if a.source is AlertSource.METER]
    assert (alert.kind, alert.meter_id) == (AlertKind.TAMPER, "B")
    assert alert.start == alert.detected_at == at_hour(30)
    assert alert.ended_at == at_hour(40) and alert.confidence == 1.0
