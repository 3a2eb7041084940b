"""The causal check raises each alert again from the data cut at its ``detected_at``, and says which are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.bench_detection import block_of, labelled_fleet_spec
from benchmarks.causal_check import Violation, dmas_alone_differ, first_raised_as, raised_again, violations
from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import new_alert
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


def _alert(kind: AlertKind, start_h: float, detected_h: int, rate_l_h: float) -> Alert:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    detected_at = t0 + timedelta(hours=detected_h)
    return new_alert(
        kind, "M1", "DMA001", start=t0 + timedelta(hours=start_h), detected_at=detected_at,
        last_seen=detected_at, ended_at=None, rate_l_h=rate_l_h, volume_l=0.0, confidence=1.0,
        evidence=((detected_at, detected_at),),
    )  # fmt: skip


def test_an_alert_whose_kind_later_reads_revised_is_raised_again_as_first_raised() -> None:
    """A burst later found to be a leak keeps the burst's ``detected_at`` and takes the leak's kind
    and start (``engine._bursts_found_to_be_leaks``): the data cut then raise the burst, which is
    right, so it is raised again. A burst at another time, or on another meter, is not it."""
    leak = _alert(AlertKind.LEAK, 2.0, 14, 180.0)  # the leak's start: the burst began at 11:00
    burst = _alert(AlertKind.BURST, 11.0, 14, 260.0)
    assert first_raised_as(leak, [burst]) and raised_again(leak, [burst])
    as_leak = _alert(AlertKind.LEAK, 13.5, 14, 240.0)  # continuous flow later put at a burst's rate
    assert raised_again(_alert(AlertKind.BURST, 13.5, 14, 300.0), [as_leak])
    assert not raised_again(leak, [_alert(AlertKind.BURST, 11.0, 13, 260.0)])
    assert not raised_again(leak, [burst.replace(meter_id="M2")])
    assert not raised_again(_alert(AlertKind.REVERSE_FLOW, 11.0, 14, 50.0), [burst])


def test_each_alert_not_raised_again_is_told_by_what_the_cut_data_raised_instead() -> None:
    leak = _alert(AlertKind.LEAK, 2.0, 14, 20.0)
    assert Violation(leak, [_alert(AlertKind.LEAK, 5.0, 14, 20.0)]).cause() == "start moved"
    assert Violation(leak, [_alert(AlertKind.LEAK, 2.0, 13, 20.0)]).cause() == "raised earlier"
    assert Violation(leak, []).cause() == "not raised"
    assert "not raised: cut then: nothing" in Violation(leak, []).line()
