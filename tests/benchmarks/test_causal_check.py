"""The causal check raises each alert again from the data cut at its ``detected_at``, and says which are not."""

from __future__ import annotations

from datetime import timedelta

from benchmarks.bench_detection import block_of, labelled_fleet_spec
from benchmarks.causal_check import dmas_alone_differ, violations
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from simulators.fleet import generate_fleet


def test_main_bursts_of_a_small_fleet_are_raised_again_and_an_alert_dated_early_is_not() -> None:
    """A small labelled fleet (2,000 meters, four weeks, 8 main bursts raised): each main burst is
    raised again from its DMA's data cut at its ``detected_at``; one claimed three hours before it
    was raised (the data cut then do not raise it) is reported."""
    config = DetectionConfig()
    block = block_of(generate_fleet(labelled_fleet_spec(2_000, 28, 2)))
    every = run_detection(block, config).alerts
    assert dmas_alone_differ(block, every, config) == []
    mains = [a for a in every if a.kind.value == "dma_burst"]
    assert len(mains) >= 6
    assert violations(block, mains, config) == []
    first = mains[0]
    early = first.replace(detected_at=first.detected_at - timedelta(hours=3))
    [found] = violations(block, [early], config)
    assert found.alert == early and not found.earlier and "cut then: nothing" in found.line()
