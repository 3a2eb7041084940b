"""The live inlet meter: customers' true use plus leakage plus main bursts, as one register."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.events import Stuck, Tamper
from simulators.inlet_model import InletMeterModel, MainBurst, leakage_m3
from simulators.meter_model import MeterModel
from simulators.network import PRESSURE_FACTOR

T0 = datetime(2026, 4, 6, tzinfo=UTC)


def dma(leakage_m3h: float = 0.4) -> InletMeterModel:
    customers = [MeterModel(f"M{i:06d}", installed=T0, seed=i) for i in range(1, 9)]
    return InletMeterModel("DMA001-INLET", "DMA001", customers, installed=T0, leakage_m3h=leakage_m3h, initial_m3=5000)


@settings(max_examples=25, deadline=None)
@given(a=st.integers(0, 3 * 86400), b=st.integers(0, 3 * 86400))
def test_inlet_minus_customers_is_leakage_plus_bursts(a: int, b: int) -> None:
    inlet = dma()
    burst = MainBurst(start=T0 + timedelta(hours=30), end=T0 + timedelta(hours=50), rate_lph=900.0)
    inlet.inject(burst)
    t1, t2 = sorted((T0 + timedelta(seconds=a), T0 + timedelta(seconds=b)))
    customers = sum(c.true_volume_m3(t2) - c.true_volume_m3(t1) for c in inlet.customers)
    lost = inlet.volume_m3(t2) - inlet.volume_m3(t1) - customers
    expected = leakage_m3(0.4, t2.timestamp()) - leakage_m3(0.4, t1.timestamp())
    expected += burst.volume_m3(t1.timestamp(), t2.timestamp())
    assert lost == pytest.approx(expected, abs=0.001 + 1e-6)


def test_leakage_integrates_its_pressure_shape() -> None:
    assert leakage_m3(2.0, 86400.0) - leakage_m3(2.0, 0.0) == pytest.approx(48.0)
    assert leakage_m3(1.0, 3 * 3600 + 1800) - leakage_m3(1.0, 3 * 3600) == pytest.approx(PRESSURE_FACTOR[3] / 2)


def test_the_inlet_sees_water_a_customer_meter_hides() -> None:
    inlet = dma(leakage_m3h=0.0)
    hidden = inlet.customers[0]
    hidden.inject(Stuck(start=T0))
    inlet.customers[1].inject(Tamper(start=T0, registered_share=0.0))
    t = T0 + timedelta(days=2)
    registered = sum(c.volume_m3(t) - c.volume_m3(T0) for c in inlet.customers)
    assert inlet.volume_m3(t) - inlet.volume_m3(T0) > registered + 0.1
    assert hidden.volume_m3(t) == hidden.volume_m3(T0)


def test_main_burst_raises_only_the_inlet_flow_and_is_ground_truth() -> None:
    inlet = dma()
    start = T0 + timedelta(hours=10)
    at = start + timedelta(hours=1)
    before = inlet.flow_m3h(at)
    customers_before = [c.flow_m3h(at) for c in inlet.customers]
    inlet.inject(MainBurst(start=start, rate_lph=2000.0))
    assert inlet.flow_m3h(at) == pytest.approx(before + 2.0)
    assert [c.flow_m3h(at) for c in inlet.customers] == customers_before
    (gt,) = inlet.ground_truth(at)
    assert (gt.event, gt.meter_id, gt.dma, gt.start, gt.end, gt.size) == (
        "dma_burst",
        None,
        "DMA001",
        start,
        None,
        2000,
    )


def test_a_live_dma_is_reproducible_and_its_faults_are_ground_truth() -> None:
    from simulators.live_dma import build_dma

    until = T0 + timedelta(days=8)
    a = build_dma("DMA007", 12, T0, seed=4, leaks=2, bursts=1, reverse_flows=1, tampers=1, stuck=1, main_bursts=1)
    b = build_dma("DMA007", 12, T0, seed=4, leaks=2, bursts=1, reverse_flows=1, tampers=1, stuck=1, main_bursts=1)
    gt = a.ground_truth(until)
    assert gt == b.ground_truth(until)
    assert sorted(e.event for e in gt) == ["burst", "dma_burst", "leak", "leak", "reverse_flow", "stuck", "tamper"]
    assert len({e.meter_id for e in gt if e.meter_id}) == 6  # one fault per meter
    assert a.inlet.volume_m3(until) == b.inlet.volume_m3(until)
    assert [m.meter_id for m in a.customers][:2] == ["M000001", "M000002"] and a.inlet.meter_id == "DMA007-INLET"
    for e in gt:
        if e.event == "leak":
            meter = next(m for m in a.customers if m.meter_id == e.meter_id)
            assert "leak" in meter.read(e.start + timedelta(days=1, minutes=5)).alarms
