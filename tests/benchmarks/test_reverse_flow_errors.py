"""The reverse-flow error report runs the detector alone, and must give the full benchmark's figures."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.bench_detection import block_of, labelled_fleet_spec, score_fleet
from benchmarks.reverse_flow_errors import Causes, Errors, event_lines, parse_seeds, run_seed
from collector.detection.alerts import Alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from simulators.fleet import generate_fleet

SEED, METERS, DAYS = 12, 2_000, 16


def _id(alert: Alert) -> str:
    return alert.alert_id


@pytest.mark.parametrize("backward_registers", [False, True], ids=["net register", "backward register"])
def test_the_detector_alone_gives_the_benchmarks_alerts_and_figures(backward_registers: bool) -> None:
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, backward_registers=backward_registers, config=config)
    fleet = generate_fleet(labelled_fleet_spec(METERS, DAYS, SEED))
    engine = run_detection(block_of(fleet, backward_registers=backward_registers), config).alerts
    assert sorted(run.alerts, key=_id) == sorted((a for a in engine if a.kind.value == "reverse_flow"), key=_id)
    [row] = [r for r in score_fleet(fleet, engine, config) if r.label == "reverse flow"]
    errors = Errors()
    errors.add(run.matches)
    assert len(errors.start_h) >= 3, "too few reverse flows after the warm-up to compare anything"
    assert (errors.events, len(errors.start_h)) == (row.score.events, row.score.detected)
    assert errors.within(1.0, 0.10) == pytest.approx((row.score.start_within_1h, row.score.volume_within_10pct))


def test_the_events_listed_are_those_off_target_or_missed() -> None:
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, backward_registers=False, config=config)
    off = [
        m for m in run.matches if m.alert is None or (m.start_error_h or 0.0) > 1.0 or (m.volume_error or 0.0) > 0.10
    ]
    lines = event_lines(run, config)
    listed = [line.split()[0] for line in lines if not line.lstrip().startswith("net:")]
    assert listed == [str(m.event.meter_id) for m in off]
    found = sum(m.alert is not None for m in off)
    assert sum(line.lstrip().startswith("net:") for line in lines) == found


def test_every_volume_miss_is_put_down_to_one_cause() -> None:
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, backward_registers=False, config=config)
    causes = Causes()
    causes.add(run, config)
    errors = Errors()
    errors.add(run.matches)
    volumes = errors.volume
    assert causes.found == len(volumes) >= 3
    assert causes.within == sum(v <= 0.10 for v in volumes)
    assert sum(causes.misses.values()) == sum(v > 0.10 for v in volumes)
    assert causes.pinned_misses <= causes.pinned <= causes.found
    assert causes.lines()[1].startswith(f"volume misses ({sum(v > 0.10 for v in volumes)}, ")


def test_seeds_are_read_as_ranges_and_lists() -> None:
    assert parse_seeds("11-13,19") == [11, 12, 13, 19]
    assert parse_seeds("19, 17-19") == [19, 17, 18]
    for text in ("13-11", "x", "11-", "-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(text)
