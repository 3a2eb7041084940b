"""What really happened in a simulation, written so tests and benchmarks can score detectors against it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aquami.excerpt import quoted
from aquami.stored_times import aware_utc

EVENT_KINDS = frozenset(
    {
        "leak",
        "burst",
        "reverse_flow",
        "stuck",
        "tamper",
        "replacement",
        "rollover",
        "clock_drift",
        "dma_burst",
        # live meters only
        "dry",
        "low_battery",
        "meter_error",
    }
)

#: Events whose ``size`` is a flow in litres per hour.
FLOW_EVENTS = frozenset({"leak", "burst", "reverse_flow", "dma_burst"})


def iso_utc(t: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, seconds precision unless there is a fraction."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: times are UTC and timezone-aware")
    s = t.astimezone(UTC).isoformat()
    return s.replace("+00:00", "Z")


def parse_iso_utc(s: str) -> datetime:
    """The UTC instant ``s`` (ISO 8601 with a UTC offset) names; a ValueError of one line, starting
    with ``s`` as written (repr; a long one's start and length: aquami.excerpt), otherwise.

    Read in the shape a stored time is (:func:`aquami.stored_times.aware_utc`), in the same words:
    Python's ``fromisoformat`` alone read ``12.5`` (ISO 8601's 12:30) as half a second past 12:00, and
    took any character between the date and the time (``2026-11-02x10:00Z``). Blanks around the time
    are refused, as before; a time with no offset too (``Z`` is UTC)."""
    try:
        return aware_utc(s)
    except OverflowError:
        raise ValueError(f"{quoted(s)} is outside the years 1 to 9999 in UTC") from None
    except ValueError as problem:
        raise ValueError(f"{quoted(s)} {problem}") from None


@dataclass(frozen=True)
class GroundTruthEvent:
    """One injected event.

    ``size`` is litres per hour for flows (leak, burst, reverse_flow, dma_burst); for ``clock_drift``
    it is the drift in seconds per day (positive: the meter's clock runs fast); for ``rollover`` the
    register's modulus in m3; for ``tamper`` the share of the true flow the meter still registers;
    0 elsewhere. ``end`` is None while the event is still going on at the end of the data; events
    that happen at an instant (replacement, rollover) have ``end == start``.
    """

    event: str
    meter_id: str | None
    dma: str
    start: datetime
    end: datetime | None
    size: float

    def __post_init__(self) -> None:
        if self.event not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.event!r}")
        if (self.meter_id is None) != (self.event == "dma_burst"):
            raise ValueError("meter_id is None exactly for dma_burst")
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise ValueError("start and end must be timezone-aware UTC")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"{self.event} ends before it starts")

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "meter_id": self.meter_id,
            "dma": self.dma,
            "start": iso_utc(self.start),
            "end": None if self.end is None else iso_utc(self.end),
            "size": self.size,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroundTruthEvent:
        return cls(
            event=d["event"],
            meter_id=d["meter_id"],
            dma=d["dma"],
            start=parse_iso_utc(d["start"]),
            end=None if d["end"] is None else parse_iso_utc(d["end"]),
            size=float(d["size"]),
        )

    def active_at(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


def write_ground_truth(events: Iterable[GroundTruthEvent], path: Path) -> None:
    path.write_text(json.dumps([e.to_json() for e in events], indent=1) + "\n", encoding="utf-8")


def read_ground_truth(path: Path) -> list[GroundTruthEvent]:
    return [GroundTruthEvent.from_json(d) for d in json.loads(path.read_text(encoding="utf-8"))]
