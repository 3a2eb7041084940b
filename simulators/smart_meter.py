"""A smart water meter for the Modbus simulators: register values from a flow model at a given time.

The flow model is pluggable (:class:`FlowModel`): anything that integrates its own flow exactly. The
walking skeleton's :class:`SteadyFlow` is a constant flow per meter, so a test knows every value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from firmware_protocols.modbus import MeterProfile


class FlowModel(Protocol):
    def volume_m3(self, at: datetime) -> float:
        """The register: cumulative volume at ``at``."""

    def flow_m3h(self, at: datetime) -> float:
        """The instantaneous flow at ``at``."""


@dataclass(frozen=True)
class SteadyFlow:
    """Constant flow from ``start``: the register advances exactly ``flow × time``."""

    start: datetime
    initial_m3: float
    rate_m3h: float

    def volume_m3(self, at: datetime) -> float:
        hours = (at - self.start).total_seconds() / 3600
        return self.initial_m3 + self.rate_m3h * max(hours, 0.0)

    def flow_m3h(self, at: datetime) -> float:
        return self.rate_m3h


@dataclass
class SmartMeter:
    """One meter at one Modbus unit id, answering from its flow model through its profile."""

    meter_id: str
    unit_id: int
    profile: MeterProfile
    model: FlowModel
    resolution_m3: float = 0.001
    alarms: set[str] = field(default_factory=set)

    def reading_at(self, at: datetime) -> dict[str, Any]:
        steps = int(self.model.volume_m3(at) / self.resolution_m3 + 1e-9)  # a register counts whole steps
        volume = round(steps * self.resolution_m3, 9)
        flow = self.model.flow_m3h(at)
        alarms = set(self.alarms)
        if flow < 0:
            alarms.add("reverse_flow")
        return {
            "volume_m3": volume,
            "flow_m3h": round(flow, 3),
            "reverse_volume_m3": 0,
            "alarms": sorted(alarms),
            "battery_percent": 100,
        }

    def registers_at(self, at: datetime) -> list[int]:
        return self.profile.encode(self.reading_at(at))
