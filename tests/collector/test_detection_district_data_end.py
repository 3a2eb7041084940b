"""A main burst found at the very end of the data, whose last inlet read is missing: raised, not a
crash (``district_overlap._known_median``); one open at the data's end is seen until the last
interval its balance is known, not the grid's end (``district_overlap._seen_until``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pytest

from benchmarks.bench_detection import block_of as fleet_block
from collector.detection.alerts import AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.series import INLET, SeriesBlock
from simulators.fleet import FleetSpec, generate_fleet
from tests.collector.test_detection_district import _background, _dma, _share_of_inflow
from tests.collector.test_detection_households import add_flow, at_hour, block_of

#: A main burst of 15% of the inflow from day 15 03:00, the data cut two hours into it.
BURST_H, CUT_H = 15 * 24 + 3.0, 15 * 24 + 5.0


@pytest.mark.parametrize("seed", [61, 62])
def test_a_main_burst_at_the_end_of_the_data_with_the_last_inlet_read_missing_is_raised(seed: int) -> None:
    """The step's one interval after its start is unknown (the inlet's read is missing), while the
    windows' medians, holding the reads before, trigger: its rate was the median of no value, NaN,
    and working out its start raised ``ValueError`` (detection stopped on the data up to that
    hour). It is raised from its start, at the rate the trigger's window measured."""
    rng = np.random.default_rng(seed)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.15)
    block = block_of(uses, inlet_extra_l=add_flow(_background(300.0), BURST_H, size)).until(at_hour(CUT_H))
    volume = block.volume_m3.copy()
    volume[block.role == INLET, -1] = np.nan
    block = type(block)(block.meter_ids, block.dma, block.role, block.timestamps, volume)
    alerts = [a for a in run_detection(block, DetectionConfig()).alerts if a.kind is AlertKind.DMA_BURST]
    (alert,) = [a for a in alerts if a.start >= at_hour(BURST_H - 24)]
    assert abs((alert.start - at_hour(BURST_H)).total_seconds()) <= 3600
    assert 0.25 * size <= alert.rate_l_h <= 1.5 * size


def _grid_reaching_on(block: SeriesBlock, hours: int, *, unread_customers: bool = True) -> SeriesBlock:
    """``block`` on a grid ``hours`` longer with no read in the new intervals (as ``aquami collector
    detect --at`` a few hours after the last reading lays it), or, ``unread_customers`` False, with
    only the inlet's reads missing over the block's last ``hours`` intervals (the customers read)."""
    m, k = block.n_meters, hours
    if not unread_customers:
        volume = block.volume_m3.copy()
        volume[block.role == INLET, -k:] = np.nan
        return dataclasses.replace(block, volume_m3=volume)
    step = np.timedelta64(block.interval_s, "s")
    return dataclasses.replace(
        block,
        timestamps=np.concatenate([block.timestamps, block.timestamps[-1] + step * np.arange(1, k + 1)]),
        volume_m3=np.hstack([block.volume_m3, np.full((m, k), np.nan)]),
        alarms={name: np.hstack([bits, np.zeros((m, k), bits.dtype)]) for name, bits in block.alarms.items()},
        reverse_m3=None if block.reverse_m3 is None else np.hstack([block.reverse_m3, np.full((m, k), np.nan)]),
        installed=None
        if block.installed is None
        else np.hstack([block.installed, block.installed[:, -1:].repeat(k, 1)]),
    )


def _open_main_bursts(block: SeriesBlock) -> dict[str, tuple[datetime, datetime, datetime, float, float]]:
    """Each open main burst's (start, detected_at, last_seen, rate, volume), by alert id."""
    return {
        a.alert_id: (a.start, a.detected_at, a.last_seen, a.rate_l_h, a.volume_l)
        for a in run_detection(block, DetectionConfig()).alerts
        if a.kind is AlertKind.DMA_BURST and a.ended_at is None
    }


@pytest.mark.parametrize("hours", [1, 6])
def test_an_open_main_burst_is_seen_until_the_last_inlet_read_not_the_grids_end(hours: int) -> None:
    """A run whose grid reaches ``hours`` past the last reading (``--at`` later) has the balance
    unknown there: the open burst's ``last_seen`` and volume are those at the last reading. They
    ran to the grid's end: every hour on added an hour of water no reading showed."""
    rng = np.random.default_rng(63)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.15)
    block = block_of(uses, inlet_extra_l=add_flow(_background(300.0), BURST_H, size)).until(at_hour(BURST_H + 12))
    at_last_read = _open_main_bursts(block)
    assert len(at_last_read) == 1
    ((_, _, last_seen, _, _),) = at_last_read.values()
    assert last_seen == at_hour(BURST_H + 12)
    assert _open_main_bursts(_grid_reaching_on(block, hours)) == at_last_read


def test_an_open_main_burst_whose_inlet_is_unread_ends_at_the_inlets_last_read() -> None:
    """The customers read on, the inlet not for its last 3 intervals: the balance is unknown there
    (a customer's missing read is estimated; the inflow is not), and the burst is last seen at the
    inlet's last read, its volume the rate over its run until then."""
    rng = np.random.default_rng(64)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.15)
    block = block_of(uses, inlet_extra_l=add_flow(_background(300.0), BURST_H, size)).until(at_hour(BURST_H + 12))
    ((start, _, last_seen, rate, volume),) = _open_main_bursts(
        _grid_reaching_on(block, 3, unread_customers=False)
    ).values()
    assert last_seen == at_hour(BURST_H + 9)
    assert volume == pytest.approx(rate * (last_seen - start).total_seconds() / 3600.0)


def test_the_labelled_fleets_open_main_burst_keeps_its_volume_when_detection_runs_hours_later() -> None:
    """The analyst's walkthrough: seed 11's DMA001 main burst (346 L/h, raised 01-18 00:00), open at
    the last readings (01-18 23:00): 9,688 L there, and 10,034, 10,380 … 12,110 L with the run
    ``--at`` 00:00, 01:00 … 06:00, no reading stored after 23:00."""
    spec = FleetSpec(
        meters=400, days=14, seed=11, meters_per_dma=200, leak_fraction=0.05, burst_fraction=0.02,
        reverse_flow_fraction=0.01, stuck_fraction=0.01, dma_bursts=2, missing_read_fraction=0.01,
    )  # fmt: skip
    block = fleet_block(generate_fleet(spec))
    at_last_read = _open_main_bursts(block)
    assert at_last_read  # the fleet's second main burst runs on past its data
    assert all(seen == block.time(block.n_intervals - 1) for _, _, seen, _, _ in at_last_read.values())
    assert _open_main_bursts(_grid_reaching_on(block, 7)) == at_last_read
