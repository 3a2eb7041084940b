"""The leak error report runs the leak and burst detectors alone, and must give the full benchmark's figures."""

from __future__ import annotations

import pytest

from benchmarks.bench_detection import block_of, labelled_fleet_spec, score_fleet
from benchmarks.leak_errors import event_lines, run_seed
from benchmarks.reverse_flow_errors import Errors
from collector.detection.alerts import Alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from simulators.fleet import generate_fleet

SEED, METERS, DAYS = 12, 2_000, 16


def _id(alert: Alert) -> str:
    return alert.alert_id


def test_the_detectors_alone_give_the_benchmarks_leak_alerts_and_figures() -> None:
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, config=config)
    fleet = generate_fleet(labelled_fleet_spec(METERS, DAYS, SEED))
    engine = run_detection(block_of(fleet), config).alerts
    assert sorted(run.alerts, key=_id) == sorted((a for a in engine if a.kind.value == "leak"), key=_id)
    [row] = [r for r in score_fleet(fleet, engine, config) if r.label == "leak ≥ 10 L/h"]
    errors = Errors()
    errors.add(run.matches)
    assert len(errors.start_h) >= 3, "too few large leaks after the warm-up to compare anything"
    assert (errors.events, len(errors.start_h)) == (row.score.events, row.score.detected)
    assert errors.within(1.0, 0.10) == pytest.approx((row.score.start_within_1h, row.score.volume_within_10pct))


def test_the_leaks_listed_are_those_off_target_or_missed() -> None:
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, config=config)
    off = [
        m for m in run.matches if m.alert is None or (m.start_error_h or 0.0) > 1.0 or (m.volume_error or 0.0) > 0.10
    ]
    lines = event_lines(run, config)
    heads = [line for line in lines if not line.lstrip().startswith(("flow:", "usual:"))]
    assert [line.split()[0] for line in heads] == [str(m.event.meter_id) for m in off]
    found = sum(m.alert is not None for m in off)
    assert sum(line.lstrip().startswith("flow:") for line in lines) == found
    assert sum(line.lstrip().startswith("usual:") for line in lines) == found
