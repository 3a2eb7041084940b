"""Small helpers the detectors share: times of columns, confidence, building an alert."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from collector.detection.alerts import Alert, AlertKind, AlertSource, make_alert_id


class Clock:
    """Column index ↔ aware UTC datetime for one block's time grid."""

    def __init__(self, timestamps: np.ndarray, interval_s: int) -> None:
        self.seconds = timestamps.astype("datetime64[s]").astype(np.int64)
        self.interval_s = interval_s

    def at(self, j: int, shift_s: float = 0.0) -> datetime:
        """The instant of column ``j``, moved by ``shift_s`` seconds (rounded to the second)."""
        return datetime.fromtimestamp(int(self.seconds[j]) + round(shift_s), tz=UTC)

    def hours(self, a: datetime, b: datetime) -> float:
        return max((b - a).total_seconds(), 0.0) / 3600.0


def confidence(score: float, threshold: float) -> float:
    """0.5 at the detection threshold, approaching 1 as the evidence grows past it."""
    if threshold <= 0:
        return 1.0
    return float(min(1.0, max(0.0, 1.0 - 0.5 * math.exp(-(score - threshold) / threshold))))


def new_alert(
    kind: AlertKind,
    meter_id: str | None,
    dma: str,
    *,
    start: datetime,
    detected_at: datetime,
    last_seen: datetime,
    ended_at: datetime | None,
    rate_l_h: float,
    volume_l: float,
    confidence: float,
    evidence: tuple[tuple[datetime, datetime], ...],
    source: AlertSource = AlertSource.DETECTOR,
) -> Alert:
    start = min(start, detected_at)
    return Alert(
        alert_id=make_alert_id(kind, meter_id, dma, detected_at, source),
        kind=kind,
        meter_id=meter_id,
        dma=dma,
        start=start,
        detected_at=detected_at,
        last_seen=max(last_seen, detected_at),
        ended_at=ended_at,
        rate_l_h=float(rate_l_h),
        volume_l=float(max(volume_l, 0.0)),
        confidence=confidence,
        evidence=evidence,
        source=source,
    )
