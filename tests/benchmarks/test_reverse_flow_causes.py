"""What the net register can tell of a reverse flow, and the cause each volume miss is put down to,
on small labelled flows run through the real detector."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from benchmarks.reverse_flow_causes import Edges, cause, register_edges
from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import new_alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.flows import interval_flows
from collector.detection.scoring import Match, match_alerts
from simulators.ground_truth import GroundTruthEvent
from tests.collector.test_detection_households import add_flow, at_hour, block_of

DAYS = 4
RATE = 20.0


def _run(use: np.ndarray, start_h: float, end_h: float) -> tuple[Match, Edges]:
    """The flow of ``RATE`` from ``start_h`` to ``end_h`` under the household's ``use`` (litres per
    hour of the data), through the detector: its match and what the register tells of it."""
    net = use - add_flow(np.zeros_like(use), start_h, RATE, end_h)
    block = block_of({"BACK": net})
    event = GroundTruthEvent("reverse_flow", "BACK", "D1", at_hour(start_h), at_hour(end_h), RATE)
    alerts = [a for a in detect(block) if a.kind is AlertKind.REVERSE_FLOW]
    (match,), _ = match_alerts(alerts, [event], "reverse_flow", block.time(block.n_intervals - 1), timedelta(hours=2))
    flows = interval_flows(block, DetectionConfig())
    ends_s = block.timestamps.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    span = at_hour(start_h).timestamp(), at_hour(end_h).timestamp()
    edges = register_edges(flows.flow_l_h[0], ends_s, *span, RATE, 1.0)
    assert edges is not None
    return match, edges


def _s(h: float) -> float:
    return at_hour(h).timestamp()


def test_a_flow_begun_under_hours_of_use_is_a_miss_the_register_could_not_avoid() -> None:
    """20 L/h from 01:30 to 11:30 on day 2, the household drawing 40 L/h from 01:00 to 05:00: the
    register first runs backwards 05:00–06:00, so it says only that the flow began after 01:00 (the
    last idle hour's end) and by 05:00; the detector dates it 04:30, 60 litres short of 200."""
    use = np.zeros(DAYS * 24)
    use[49:53] = 40.0
    match, edges = _run(use, 49.5, 59.5)
    assert (edges.start_lo, edges.start_hi) == (_s(49.0), _s(53.0))
    assert (edges.end_lo, edges.end_hi) == (_s(59.5), _s(60.0))  # use in its last hour could hide more
    assert edges.clear_rate
    assert not edges.pinned(RATE, 200.0)
    assert match.volume_error is not None and match.volume_error > 0.10
    assert cause(match, edges, _s(DAYS * 24)) == "start hidden under use"


def test_a_flow_with_idle_hours_around_it_is_pinned_and_sized() -> None:
    match, edges = _run(np.zeros(DAYS * 24), 25.5, 45.5)
    assert (edges.start_lo, edges.start_hi, edges.end_lo, edges.end_hi) == (_s(25.0), _s(25.5), _s(45.5), _s(46.0))
    assert edges.pinned(RATE, 400.0)
    assert match.volume_error is not None and match.volume_error <= 0.10


def test_a_start_the_register_showed_but_the_estimate_missed_is_a_misread() -> None:
    match, edges = _run(np.zeros(DAYS * 24), 25.5, 45.5)
    assert match.alert is not None
    late = _moved(match.alert, hours=3.0)
    assert cause(Match(match.event, late, match.observed_h), edges, _s(DAYS * 24)) == "start misread late"
    early = _moved(match.alert, hours=-3.0)
    assert cause(Match(match.event, early, match.observed_h), edges, _s(DAYS * 24)) == "start taken too early"


def test_a_rate_that_no_hour_shows_whole_is_a_miss_of_the_rate() -> None:
    """The household draws 6 L in every hour of the flow: no hour shows its 20 L/h."""
    use = np.zeros(DAYS * 24)
    use[25:46] = 6.0
    match, edges = _run(use, 25.5, 45.5)
    assert not edges.clear_rate
    assert match.alert is not None and match.alert.rate_l_h == pytest.approx(14.0, abs=1.0)
    assert cause(match, edges, _s(DAYS * 24)) == "rate read low, no interval clear of use"


def _moved(alert: Alert, *, hours: float) -> Alert:
    """The alert with its start moved by ``hours`` and its volume following (a real alert's figures)."""
    start = alert.start + timedelta(hours=hours)
    end = alert.ended_at or alert.last_seen
    return new_alert(
        alert.kind,
        alert.meter_id,
        alert.dma,
        start=start,
        detected_at=max(alert.detected_at, start),
        last_seen=alert.last_seen,
        ended_at=alert.ended_at,
        rate_l_h=alert.rate_l_h,
        volume_l=alert.rate_l_h * (end - start).total_seconds() / 3600.0,
        confidence=alert.confidence,
        evidence=alert.evidence,
    )
