"""A smart water meter for the Modbus simulators: register values from a flow model at a given time.

The flow model is pluggable (:class:`FlowModel`): anything that integrates its own flow exactly. The
walking skeleton's :class:`SteadyFlow` is a constant flow per meter, so a test knows every value; the
consumption model's live meters (:class:`~simulators.meter_model.MeterModel`,
:class:`~simulators.inlet_model.InletMeterModel`) also give reverse volume and the meter's own alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from firmware_protocols.modbus import MeterProfile
from simulators.inlet_model import InletMeterModel
from simulators.meter_model import MeterModel
from simulators.modbus_unit import serial_number_for


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
    #: the serial number its profile's ``serial_number`` register holds; "": derived from ``meter_id``.
    #: Another meter at the same unit id (exchanged, or unit ids swapped) is one with another.
    serial_number: str = ""

    def __post_init__(self) -> None:
        if not self.serial_number:
            self.serial_number = serial_number_for(self.meter_id)

    def reading_at(self, at: datetime) -> dict[str, Any]:
        if isinstance(self.model, MeterModel | InletMeterModel):
            return self._modelled_reading(at, self.model)
        # A register counts whole steps. The tolerance is in steps: at 1e5 m3 and 0.001 m3 a float
        # division is off by ~1e-8 steps, so an exact 12345.678 must not floor to 12345.677.
        steps = math.floor(self.model.volume_m3(at) / self.resolution_m3 + 1e-6)
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
            "serial_number": self.serial_number,
        }

    def _modelled_reading(self, at: datetime, model: MeterModel | InletMeterModel) -> dict[str, Any]:
        reading = model.read(at)  # already quantized to the model's own register resolution
        alarms = set(self.alarms) | reading.alarms
        return {
            "volume_m3": reading.volume_m3,
            "flow_m3h": round(reading.flow_m3h, 3),
            "reverse_volume_m3": reading.reverse_volume_m3,
            "alarms": sorted(alarms),
            "battery_percent": 9 if "low_battery" in alarms else 100,
            "serial_number": self.serial_number,
        }

    def registers_at(self, at: datetime) -> list[int]:
        return self.profile.encode(self.reading_at(at))
