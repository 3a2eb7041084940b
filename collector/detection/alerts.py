"""What a detector raises: an alert about a meter or a DMA, with its evidence and lifecycle state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from collector.detection.timefmt import iso_utc


class AlertKind(StrEnum):
    LEAK = "leak"
    BURST = "burst"
    REVERSE_FLOW = "reverse_flow"
    STUCK = "stuck"
    DMA_BURST = "dma_burst"
    # alarm bits the meters raise themselves, passed through
    TAMPER = "tamper"
    DRY = "dry"
    LOW_BATTERY = "low_battery"
    METER_ERROR = "meter_error"


class AlertStatus(StrEnum):
    OPEN = "open"
    ONGOING = "ongoing"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class AlertSource(StrEnum):
    DETECTOR = "detector"
    METER = "meter"  # the meter's own alarm bit


ACTIVE = frozenset({AlertStatus.OPEN, AlertStatus.ONGOING})
#: Kinds whose ``rate_l_h`` is water flowing (lost, or going back): the others' rate is no flow to
#: show (a tamper or a stuck register's is the use going unrecorded; a meter's own alarms carry none).
FLOW_KINDS = frozenset({AlertKind.LEAK, AlertKind.BURST, AlertKind.REVERSE_FLOW, AlertKind.DMA_BURST})


@dataclass(frozen=True)
class Alert:
    """One episode of one kind of trouble at one meter (``meter_id``) or one DMA (``meter_id`` None).

    ``start`` is the estimated start of the episode; ``detected_at`` the instant of the reading that
    first made it detectable (detection is causal: the data up to ``detected_at`` raise it);
    ``last_seen`` the latest reading still showing it; ``ended_at`` when the flow stopped, if it has.
    ``rate_l_h`` is the estimated flow of the fault (for ``stuck``, the use the meter fails to
    register; 0 for a meter's own alarms that are no flow: tamper, dry, low_battery, meter_error);
    ``volume_l`` the water lost or unregistered from ``start`` to ``last_seen``.
    ``evidence`` lists the intervals (from, to) whose readings triggered the alert.
    """

    alert_id: str
    kind: AlertKind
    meter_id: str | None
    dma: str
    start: datetime
    detected_at: datetime
    last_seen: datetime
    rate_l_h: float
    volume_l: float
    confidence: float
    evidence: tuple[tuple[datetime, datetime], ...]
    ended_at: datetime | None = None
    status: AlertStatus = AlertStatus.OPEN
    source: AlertSource = AlertSource.DETECTOR
    resolved_at: datetime | None = None
    dismissed_at: datetime | None = None
    dismissed_by: str | None = None
    dismiss_reason: str | None = None
    updated_at: datetime | None = None  # when the lifecycle last changed it
    dismissed_by_key_id: str | None = None  # the API key dismissed_by names (two keys may carry one name)

    @property
    def subject(self) -> str:
        return self.meter_id if self.meter_id is not None else f"dma:{self.dma}"

    @property
    def key(self) -> tuple[str, str]:
        """What makes two alerts about the same thing (episodes are told apart by time): a meter's by
        the meter alone (moved to another DMA, its leak is the same leak), a district's by the DMA."""
        return (self.kind.value, self.subject)

    def overlaps(self, other: Alert) -> bool:
        """Whether the two episodes share any time (one still running has run up to its last read)."""
        return self.start <= (other.ended_at or other.last_seen) and other.start <= (self.ended_at or self.last_seen)

    def replace(self, **changes: Any) -> Alert:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        def opt(t: datetime | None) -> str | None:
            return None if t is None else iso_utc(t)

        return {
            "alert_id": self.alert_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "source": self.source.value,
            "meter_id": self.meter_id,
            "dma": self.dma,
            "start": iso_utc(self.start),
            "detected_at": iso_utc(self.detected_at),
            "last_seen": iso_utc(self.last_seen),
            "ended_at": opt(self.ended_at),
            "rate_l_h": round(self.rate_l_h, 3),
            "volume_l": round(self.volume_l, 1),
            "confidence": round(self.confidence, 3),
            "evidence": [[iso_utc(a), iso_utc(b)] for a, b in self.evidence],
            "resolved_at": opt(self.resolved_at),
            "dismissed_at": opt(self.dismissed_at),
            "dismissed_by": self.dismissed_by,
            "dismiss_reason": self.dismiss_reason,
            "updated_at": opt(self.updated_at),
            "dismissed_by_key_id": self.dismissed_by_key_id,
        }


def make_alert_id(
    kind: AlertKind,
    meter_id: str | None,
    dma: str,
    detected_at: datetime,
    source: AlertSource = AlertSource.DETECTOR,
) -> str:
    """Stable id: detection is causal, so re-running on more data gives the same ``detected_at``."""
    subject = meter_id if meter_id is not None else f"dma:{dma}"
    suffix = "" if source is AlertSource.DETECTOR else f"/{source.value}"
    return f"{kind.value}/{subject}/{detected_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}{suffix}"
