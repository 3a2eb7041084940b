"""The new meter a rig's ``exchange`` puts on a connection: the connection's water, its own register.

A meter exchange changes the meter, not the water: the new meter measures what the connection draws
from the exchange on (the meter model goes on, faults in the water included), and its register starts
from what it showed when fitted (``volume_m3``, 0 for a new meter). Its forward and backward volumes
start at 0 there too, and it has no history before it was fitted (its ``installed`` is the exchange).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from simulators.meter_model import MeterReading
from simulators.modelled_meter import LiveMeter


@dataclass
class ExchangedMeter:
    """``meter``'s water on a register fitted at ``fitted`` reading ``start_m3`` then (a
    :class:`~simulators.mbus_slave.RegisterMeter` and a :class:`~simulators.modelled_meter.LiveMeter`)."""

    meter: LiveMeter
    fitted: datetime
    start_m3: float = 0.0
    _at_fitting: MeterReading = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._at_fitting = self.meter.read(self.fitted)

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    @property
    def installed(self) -> datetime:
        return self.fitted

    def read(self, t: datetime) -> MeterReading:
        """The connection's reading at ``t`` (not before the fitting), on this meter's register."""
        reading = self.meter.read(max(t, self.fitted))
        before = self._at_fitting
        return replace(
            reading,
            ts=t,
            volume_m3=round(self.start_m3 + reading.volume_m3 - before.volume_m3, 6),
            forward_volume_m3=round(reading.forward_volume_m3 - before.forward_volume_m3, 6),
            reverse_volume_m3=round(reading.reverse_volume_m3 - before.reverse_volume_m3, 6),
        )

    def volume_m3(self, at: datetime) -> float:
        return self.read(at).volume_m3
