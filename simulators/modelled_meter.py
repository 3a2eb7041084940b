"""A live meter model behind a Modbus unit id: its reading, through the profile, as register values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from firmware_protocols.modbus import MeterProfile
from simulators.meter_model import MeterReading
from simulators.modbus_unit import serial_number_for


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
    serial_number: str = ""  # its profile's ``serial_number`` register; "": derived from its meter's id

    def __post_init__(self) -> None:
        if not self.serial_number:
            self.serial_number = serial_number_for(self.meter.meter_id)

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    def reading_at(self, at: datetime) -> dict[str, Any]:
        """The reading fields the profile encodes (fields it has no register for are left out)."""
        reading = self.meter.read(at)
        fields = reading.fields()
        low = "low_battery" in reading.alarms
        fields["battery_percent"] = self.low_battery_percent if low else self.battery_percent
        fields["serial_number"] = self.serial_number
        return fields

    def registers_at(self, at: datetime) -> list[int]:
        return self.profile.encode(self.reading_at(at))
