"""The live inlet meter: customers' true use plus leakage plus main bursts, as one register."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.events import ReverseFlow, Stuck, Tamper
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


def _reversing_dma(burst_at_s: int) -> tuple[InletMeterModel, MeterModel]:
    customers = [MeterModel(f"M{i}", installed=T0, seed=i) for i in (1, 2)]
    sender = customers[0]
    sender.inject(ReverseFlow(start=T0 + timedelta(days=1, hours=3), end=T0 + timedelta(days=2, hours=1), rate_lph=900))
    inlet = InletMeterModel("IN", "D", customers, installed=T0, leakage_m3h=0.05, initial_m3=500)
    start = T0 + timedelta(days=1, hours=3, seconds=burst_at_s)  # mid-step, now and then: the flow turns within a step
    inlet.inject(MainBurst(start=start, end=start + timedelta(hours=2, seconds=7), rate_lph=600))
    return inlet, sender


def _backward_m3(inlet: InletMeterModel, t1: datetime, t2: datetime) -> float:
    """∫ max(-flow, 0) dt over [t1, t2], from the flow the inlet reports, piece by constant piece."""
    edges = {t1, t2}
    t = datetime.fromtimestamp((t1.timestamp() // 60 + 1) * 60, tz=UTC)
    while t < t2:
        edges.add(t)
        t += timedelta(minutes=1)
    for b in inlet.bursts:
        edges |= {e for e in (b.start, b.end) if e is not None and t1 < e < t2}
    ordered = sorted(edges)
    return sum(
        max(-inlet.flow_m3h(a + (b - a) / 2), 0.0) * (b - a).total_seconds() / 3600
        for a, b in itertools.pairwise(ordered)
    )


@settings(max_examples=15, deadline=None)
@given(a=st.integers(0, 3 * 86400), b=st.integers(0, 3 * 86400), burst_at_s=st.integers(0, 3600))
def test_the_inlet_s_totalisers_count_each_way_of_the_flow(a: int, b: int, burst_at_s: int) -> None:
    """Before, the forward totaliser was the net register (it ran backwards under reverse flow) and the
    reverse totaliser was always 0."""
    inlet, _ = _reversing_dma(burst_at_s)
    t1, t2 = sorted((T0 + timedelta(seconds=a), T0 + timedelta(seconds=b)))
    r1, r2 = inlet.read(t1), inlet.read(t2)
    assert r2.forward_volume_m3 >= r1.forward_volume_m3 and r2.reverse_volume_m3 >= r1.reverse_volume_m3
    backward = r2.reverse_volume_m3 - r1.reverse_volume_m3
    assert backward == pytest.approx(_backward_m3(inlet, t1, t2), abs=0.0011)
    assert r2.forward_volume_m3 - r2.reverse_volume_m3 == pytest.approx(r2.volume_m3, abs=0.0011)


def test_the_inlet_s_reverse_totaliser_counts_the_night_the_district_sends_water_back() -> None:
    inlet, sender = _reversing_dma(0)
    night = T0 + timedelta(days=1, hours=5)
    assert inlet.flow_m3h(night) < 0
    before, after = inlet.read(night), inlet.read(night + timedelta(hours=1))
    assert after.reverse_volume_m3 - before.reverse_volume_m3 > 0.1
    assert after.forward_volume_m3 >= before.forward_volume_m3
    assert after.volume_m3 < before.volume_m3  # the net register, which the district's balance counts
    # a fault ended after days were worked out changes them from its new end on, and only then
    later = T0 + timedelta(days=3)
    inlet.read(later)
    sender.end_fault(sender.faults[0], T0 + timedelta(days=1, hours=6))
    fresh = InletMeterModel("IN", "D", inlet.customers, installed=T0, leakage_m3h=0.05, initial_m3=500)
    fresh.bursts = list(inlet.bursts)
    for at in (night, later, later + timedelta(hours=5)):
        assert inlet.read(at) == fresh.read(at)


@pytest.mark.parametrize(
    ("installed", "shown"),
    [
        (datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "1969-12-31T23:59:59.999999Z"),
        (datetime(1970, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "1969-12-31T23:30:00Z"),
        (datetime(1900, 1, 1, tzinfo=UTC), "1900-01-01T00:00:00Z"),
    ],
)
def test_an_inlet_installed_before_1970_is_refused_when_it_is_built(installed: datetime, shown: str) -> None:
    """As a customer's meter is (MeterModel): the simulated meters start from the Unix epoch. Before,
    the inlet was built as any other, and read as if it had always been in place."""
    with pytest.raises(ValueError) as refused:
        InletMeterModel("DMA001-INLET", "DMA001", [], installed=installed, leakage_m3h=0.4)
    assert str(refused.value) == (
        f"DMA001-INLET: installed {shown}, before 1970-01-01T00:00:00Z, the earliest the simulated meters start from"
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)  # the epoch itself is fine
    inlet = InletMeterModel("DMA001-INLET", "DMA001", [], installed=epoch, leakage_m3h=0.4)
    assert inlet.volume_m3(epoch + timedelta(days=1)) == pytest.approx(9.6, abs=0.001)
