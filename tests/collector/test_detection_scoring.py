"""Scoring helpers: matching alerts to ground truth, and LeakDB's F1 and early-detection score."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from collector.detection.alerts import Alert, AlertKind, make_alert_id
from collector.detection.common import new_alert
from collector.detection.scoring import interval_labels, leakdb_scores, match_alerts, score_kind

T0 = datetime(2026, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)


@dataclass(frozen=True)
class Event:
    event: str
    meter_id: str | None
    dma: str
    start: datetime
    end: datetime | None
    size: float


def _alert(
    meter: str, detected: datetime, start: datetime, rate: float, until: datetime | None = None, ended: bool = False
) -> Alert:
    """A leak alert flowing at ``rate`` from ``start`` until ``until`` (default: 10 h after it was
    raised), ended there if ``ended``."""
    last_seen = until or detected + 10 * H
    return Alert(
        alert_id=make_alert_id(AlertKind.LEAK, meter, "D", detected),
        kind=AlertKind.LEAK,
        meter_id=meter,
        dma="D",
        start=start,
        detected_at=detected,
        last_seen=last_seen,
        ended_at=last_seen if ended else None,
        rate_l_h=rate,
        volume_l=rate * (last_seen - start) / H,
        confidence=0.6,
        evidence=(),
    )


def test_recall_precision_false_alarms_and_delays() -> None:
    truth = [
        Event("leak", "A", "D", T0, None, 10.0),
        Event("leak", "B", "D", T0, None, 20.0),
        Event("burst", "C", "D", T0, None, 900.0),
    ]
    alerts = [
        _alert("A", T0 + 6 * H, T0 + 0.5 * H, 10.0, until=T0 + 48 * H),
        _alert("A", T0 + 9 * H, T0, 10.0),  # the same leak again: a repeat, not a false alarm
        _alert("C", T0 + 2 * H, T0, 900.0),  # a leak alert at a burst: a false alarm
        _alert("E", T0 - 5 * H, T0 - 9 * H, 3.0),  # nothing there
    ]
    s = score_kind(alerts, truth, "leak", data_end=T0 + 48 * H, meter_days=1000.0, grace=2 * H)
    assert (s.events, s.detected, s.alerts, s.false_alarms, s.repeats) == (2, 1, 4, 2, 1)
    assert s.recall == 0.5 and s.precision == 0.5
    assert s.false_per_10k_meter_days == pytest.approx(20.0)
    assert s.median_delay_h == pytest.approx(6.0)
    assert s.start_within_1h == 1.0 and s.volume_within_10pct == 1.0


def test_volume_is_the_alerts_own_against_the_water_lost_within_the_data() -> None:
    """An alert is within 10% only if its volume, what billing's leak adjustment takes, is within
    10% of what the event lost: running on for days after the repair, or ending days before it, is
    as wrong as the wrong rate, though the rate is right while both are on."""
    repaired = T0 + 24 * H
    truth = [Event("leak", m, "D", T0, repaired, 10.0) for m in ("RIGHT", "RUNS_ON", "ENDS_EARLY", "RATE")]
    truth.append(Event("leak", "ONGOING", "D", T0, None, 10.0))
    alerts = [
        _alert("RIGHT", T0 + 6 * H, T0 + 0.5 * H, 10.0, until=repaired + 0.5 * H, ended=True),
        _alert("RUNS_ON", T0 + 6 * H, T0, 10.0, until=T0 + 72 * H),
        _alert("ENDS_EARLY", T0 + 6 * H, T0, 10.0, until=T0 + 12 * H, ended=True),
        _alert("RATE", T0 + 6 * H, T0, 12.0, until=repaired, ended=True),
        _alert("ONGOING", T0 + 6 * H, T0, 10.0, until=T0 + 96 * H),
    ]
    matches, _ = match_alerts(alerts, truth, "leak", data_end=T0 + 96 * H, grace=2 * H)
    errors = {m.event.meter_id: m.volume_error for m in matches}
    assert errors == pytest.approx({"RIGHT": 0.0, "RUNS_ON": 2.0, "ENDS_EARLY": 0.5, "RATE": 0.2, "ONGOING": 0.0})
    s = score_kind(alerts, truth, "leak", data_end=T0 + 96 * H, meter_days=100.0, grace=2 * H)
    assert s.volume_within_10pct == pytest.approx(2 / 5)


def test_leakdb_f1_and_early_detection_follow_its_formula() -> None:
    truth = np.zeros((1, 100), dtype=np.int8)
    truth[0, 20:60] = 1
    perfect = truth.copy()
    f1, sed = leakdb_scores(truth, perfect)
    assert f1 == pytest.approx(100.0) and sed == pytest.approx(100.0)
    late = np.zeros_like(truth)
    late[0, 30:70] = 1  # 10 steps late, then steady
    f1, sed = leakdb_scores(truth, late)
    assert f1 == pytest.approx(200 * 30 / (60 + 10 + 10))
    tw = 39 + 10
    assert sed == pytest.approx(100 * 2 / (1 + math.exp(5 / tw * 10)))
    flicker = np.zeros_like(truth)
    flicker[0, 25:30] = 1  # found, but not held: LeakDB gives no credit
    assert leakdb_scores(truth, flicker)[1] == 0.0


def test_interval_labels_cover_from_start_to_end() -> None:
    stamps = np.datetime64("2026-01-10T00:00:00", "s") + np.arange(6) * np.timedelta64(3600, "s")
    labels = interval_labels([("D2", T0 + 2 * H, T0 + 4 * H), ("D1", T0 + 5 * H, None)], ["D1", "D2"], stamps)
    assert labels.tolist() == [[0, 0, 0, 0, 0, 1], [0, 0, 1, 1, 0, 0]]


def test_a_deadline_per_event_decides_what_was_detected_in_time() -> None:
    """The benchmark's "within one read interval": by the read closing the first whole interval, or,
    when that read is missing, the next read that came; an event no read can show in time is not
    counted at all."""
    truth = [
        Event("burst", "ON_TIME", "D", T0 + 0.2 * H, None, 900.0),
        Event("burst", "LATE", "D", T0 + 0.2 * H, None, 900.0),
        Event("burst", "READ_LOST", "D", T0 + 0.2 * H, None, 900.0),
        Event("burst", "NO_READ", "D", T0 + 0.2 * H, None, 900.0),
    ]
    alerts = [
        _alert("ON_TIME", T0 + 2 * H, T0, 900.0),
        _alert("LATE", T0 + 3 * H, T0, 900.0),
        _alert("READ_LOST", T0 + 3 * H, T0, 900.0),
    ]
    alerts = [a.replace(kind=AlertKind.BURST) for a in alerts]
    due = {"ON_TIME": T0 + 2 * H, "LATE": T0 + 2 * H, "READ_LOST": T0 + 3 * H, "NO_READ": None}
    s = score_kind(
        alerts,
        truth,
        "burst",
        data_end=T0 + 48 * H,
        meter_days=100.0,
        grace=2 * H,
        deadline=lambda e: due[str(e.meter_id)],
    )
    assert (s.events, s.detected, s.false_alarms) == (3, 2, 0)
    assert s.recall == pytest.approx(2 / 3)


def test_an_alert_during_two_overlapping_events_is_the_detection_of_the_one_it_dates_from() -> None:
    """A small main burst hidden under a large one, then a third: the alert raised while the first
    two are on, dated from the third's start, is the third's detection, and the first's a miss."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def event(start_h: float, end_h: float) -> SimpleNamespace:
        return SimpleNamespace(
            event="dma_burst",
            meter_id=None,
            dma="D1",
            start=t0 + timedelta(hours=start_h),
            end=t0 + timedelta(hours=end_h),
            size=500.0,
        )

    hidden, third = event(0, 150), event(140, 200)
    alert = new_alert(
        AlertKind.DMA_BURST,
        None,
        "D1",
        start=t0 + timedelta(hours=140.2),
        detected_at=t0 + timedelta(hours=143),
        last_seen=t0 + timedelta(hours=200),
        ended_at=None,
        rate_l_h=500.0,
        volume_l=0.0,
        confidence=0.9,
        evidence=(),
    )
    matches, false = match_alerts([alert], [hidden, third], "dma_burst", t0 + timedelta(hours=300), timedelta(0))
    assert [m.alert for m in matches] == [None, alert]
    assert false == []
