"""The hydraulic-network DMA (WNTR on EPANET's Net1 and Net3) and the district detector on it."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from collector.detection.alerts import AlertKind
from collector.detection.engine import run_detection
from collector.detection.series import SeriesBlock
from simulators.fleet import Fleet
from simulators.hydraulic_dma import NetworkDmaSpec, generate_network_dma

# One 48-hour main burst of 10% of the inflow, exact registers and every read: the balance is the
# network's losses alone. Hourly hydraulic steps keep the simulation to a few seconds.
EXACT = NetworkDmaSpec(
    network="Net1",
    days=12,
    seed=5,
    bursts=1,
    burst_share=(0.10, 0.10),
    burst_hours=(48.0, 48.0),
    first_burst_day=8,
    meter_error_mean=0.0,
    meter_error_sd=0.0,
    missing_read_fraction=0.0,
    hydraulic_step_s=3600,
)


@pytest.fixture(scope="module")
def exact() -> Fleet:
    return generate_network_dma(EXACT)


def _balance_m3h(fleet: Fleet) -> np.ndarray:
    inlet = fleet.role == "inlet"
    return np.diff(fleet.volume_m3[inlet][0]) - np.diff(fleet.volume_m3[~inlet], axis=1).sum(axis=0)


def test_the_inlet_is_the_customers_plus_the_background_leakage_and_the_burst(exact: Fleet) -> None:
    (burst,) = exact.ground_truth
    assert burst.event == "dma_burst" and burst.dma == "NET1"
    hours = exact.timestamps[:-1].astype("datetime64[s]").astype(np.int64)
    until = burst.end.timestamp() if burst.end is not None else np.inf  # None: still on at the data's end
    on = (hours >= burst.start.timestamp()) & (hours + 3600 <= until)
    before = hours + 3600 <= burst.start.timestamp()
    assert on.sum() >= 24 and before.sum() >= 24 * 8
    balance = _balance_m3h(exact)
    background = balance[before]
    # background leakage: every hour, about the 12% of demand it was sized to (pressure moves it)
    demand = np.diff(exact.volume_m3[exact.role == "customer"], axis=1).sum(axis=0)
    assert np.all(background > 0)
    assert 0.08 < background.mean() / demand[before].mean() < 0.16
    # the burst adds its reported flow to the balance, hour by hour, on the same background
    added = balance[on].mean() - np.median(background)
    assert added == pytest.approx(burst.size / 1000.0, rel=0.05)
    assert 0.05 < added / (demand.mean() + np.median(background)) < 0.15


def test_the_blocks_of_households_are_registered_as_bulk_meters_and_raise_no_customer_alert(exact: Fleet) -> None:
    """Net1's junctions draw dozens of households' worth each: every customer meter is a block of
    households, never idle, and registered as a bulk meter. No customer has a fault here, and the
    detectors raise nothing about them; as households, the blocks' first peaks and their continuous
    flow would be bursts and leaks."""
    assert exact.bulk is not None
    customers = exact.role == "customer"
    assert exact.bulk[customers].all() and not exact.bulk[~customers].any()
    assert np.nanmin(np.diff(exact.volume_m3[customers], axis=1)) > 0.0
    block = SeriesBlock(exact.meter_ids, exact.dma, exact.role, exact.timestamps, exact.volume_m3, bulk=exact.bulk)
    assert [a for a in run_detection(block).alerts if a.meter_id is not None] == []
    unregistered = SeriesBlock(exact.meter_ids, exact.dma, exact.role, exact.timestamps, exact.volume_m3)
    assert {a.kind for a in run_detection(unregistered).alerts if a.meter_id is not None} >= {AlertKind.BURST}


def test_the_same_spec_simulates_the_same_dma() -> None:
    spec = NetworkDmaSpec(network="Net1", days=9, seed=2, bursts=1, hydraulic_step_s=3600)
    a, b = generate_network_dma(spec), generate_network_dma(spec)
    np.testing.assert_array_equal(a.volume_m3, b.volume_m3)
    assert a.ground_truth == b.ground_truth
    other = generate_network_dma(NetworkDmaSpec(network="Net1", days=9, seed=3, bursts=1, hydraulic_step_s=3600))
    assert not np.array_equal(a.volume_m3, other.volume_m3, equal_nan=True)


def test_a_main_burst_on_the_network_is_raised_from_its_start_with_its_flow(exact: Fleet) -> None:
    (burst,) = exact.ground_truth
    block = SeriesBlock(exact.meter_ids, exact.dma, exact.role, exact.timestamps, exact.volume_m3)
    alerts = [a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST]
    assert len(alerts) == 1, alerts
    (alert,) = alerts
    assert alert.dma == "NET1"
    assert abs(alert.start - burst.start) <= timedelta(hours=1)
    assert burst.start <= alert.detected_at <= burst.start + timedelta(hours=6)
    assert alert.rate_l_h == pytest.approx(burst.size, rel=0.10)


@pytest.mark.filterwarnings("ignore:Covariance of the parameters could not be estimated")  # a one-point pump curve
def test_the_river_pump_of_net3_keeps_its_daily_hours_after_the_first_week() -> None:
    """Net3's [CONTROLS] run pump 10 from 01:00 to 15:00 for one week only, written out hour by hour;
    the simulator repeats them every day, so week two pumps like week one."""
    import wntr

    from simulators.hydraulic_dma import _repeat_time_controls_daily, shipped_network

    wn = wntr.network.WaterNetworkModel(str(shipped_network("Net3")))
    _repeat_time_controls_daily(wn)
    wn.options.time.duration = 9 * 86_400
    status = wntr.sim.WNTRSimulator(wn).run_sim().link["status"]["10"]
    day_8 = 8 * 86_400
    assert status[day_8 + 3 * 3600] == 1  # open
    assert status[day_8 + 17 * 3600] == 0  # closed
    assert status[day_8 + 23 * 3600] == 0
