"""The TCP simulator's SmartMeter with the consumption model behind it, and its register counting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from firmware_protocols.modbus import load_profile
from simulators.events import Leak, ReverseFlow
from simulators.meter_model import MeterModel
from simulators.smart_meter import SmartMeter, SteadyFlow

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def test_a_modelled_smart_meter_reports_alarms_and_reverse_volume() -> None:
    model = MeterModel("WM-00001", installed=T0, seed=1, initial_m3=321.0)
    model.inject(Leak(start=T0, rate_lph=10.0))
    model.inject(ReverseFlow(start=T0 + timedelta(hours=30), end=T0 + timedelta(hours=31), rate_lph=50.0))
    meter = SmartMeter("WM-00001", 1, load_profile("smart_water_meter"), model)
    at = T0 + timedelta(hours=31, minutes=30)
    truth = model.read(at)
    decoded = meter.profile.decode_registers(meter.registers_at(at))
    assert decoded["volume_m3"] == pytest.approx(truth.volume_m3, abs=1e-9)
    assert decoded["reverse_volume_m3"] == truth.reverse_volume_m3
    # 50 L/h back for an hour against the 10 L/h leak: 40 L went back through the meter, less the
    # minutes the household drew more than that (the meter then turns forwards)
    assert 0.030 <= decoded["reverse_volume_m3"] <= 0.040 + 0.0011
    assert {"leak", "reverse_flow"} <= set(decoded["alarms"])


def test_an_exact_register_value_is_not_floored_a_step_down() -> None:
    profile = load_profile("smart_water_meter")
    values = [26978.671, 29971.189, 35779.52, 99999.999, 101.001, 0.007]  # the first three floored before
    for v in values:
        meter = SmartMeter("WM-1", 1, profile, SteadyFlow(T0, initial_m3=v, rate_m3h=0.0))
        assert meter.reading_at(T0)["volume_m3"] == v
