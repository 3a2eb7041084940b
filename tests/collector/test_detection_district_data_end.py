"""A main burst found at the very end of the data, whose last inlet read is missing: raised, not a
crash (``district_overlap._known_median``)."""

from __future__ import annotations

import numpy as np
import pytest

from collector.detection.alerts import AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.series import INLET
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
