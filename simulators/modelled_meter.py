"""A live meter model behind a Modbus unit id: its reading, through the profile, as register values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from firmware_protocols.modbus import MeterProfile
from simulators.meter_model import MeterReading


class LiveMeter(Protocol):
    """A customer meter (:class:`~simulators.meter_model.MeterModel`) or an inlet meter."""

    @property
    def meter_id(self) -> str: ...

    def read(self, t: datetime) -> MeterReading: ...


@dataclass
class ModelledMeter:
    unit_id: int
    profile: MeterProfile
    meter: LiveMeter
    battery_percent: int = 87
    low_battery_percent: int = 9

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    def reading_at(self, at: datetime) -> dict[str, Any]:
        """The reading fields the profile encodes (fields it has no register for are left out)."""
        reading = self.meter.read(at)
        fields = reading.fields()
        low = "low_battery" in reading.alarms
        fields["battery_percent"] = self.low_battery_percent if low else self.battery_percent
        return fields

    def registers_at(self, at: datetime) -> list[int]:
        return self.profile.encode(self.reading_at(at))
