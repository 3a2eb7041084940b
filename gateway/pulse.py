"""Pulse counters: a module that counts a meter's pulses, read over Modbus like any meter.

Wrap-around: a module's 32-bit counter rolls over to 0; the meter's register must not. The gateway
sees successive counts, so a count in the bottom quarter of the counter's span after one in its top
quarter is a wrap: add the span from then on. Any other fall is the module counting again from 0 (a
power cycle without a kept count, a module replaced): no wrap, a register that falls to near zero,
which VEE takes for a replacement and counts on from (taken for a wrap, a module reset at 2.4e9
pulses added 188,000 m³ that never flowed). The previous count and the number of wraps are kept in
the spool's database (:class:`WrapStore`), so a restart does not forget a wrap.

Source: the MQTT contract tells a pulse count (``source.protocol`` "pulse") from a meter's own
register, whatever bus carried it; the bus name and the module's unit id stay as they are.
"""

from __future__ import annotations

from typing import Protocol

from aquami.contracts import reads
from gateway.config import MeterConfig

PULSE_PROFILE = "pulse_counter"


def is_pulse_counter(meter: MeterConfig) -> bool:
    """The ``pulse_counter`` profile, or any profile scaled by ``litres_per_pulse`` (the same test
    decides that the wrap-around applies, :meth:`gateway.profiles.ProfileBook.volume_filter`)."""
    return meter.profile == PULSE_PROFILE or "litres_per_pulse" in meter.parameters


def source_protocol(meter: MeterConfig, bus_protocol: reads.Protocol) -> reads.Protocol:
    """``source.protocol`` of ``meter``'s readings: "pulse" for a pulse counter, else the bus's."""
    return "pulse" if is_pulse_counter(meter) else bus_protocol


class WrapStore(Protocol):
    def load_wrap(self, meter_id: str) -> tuple[float | None, int]: ...

    def save_wrap(self, meter_id: str, last_m3: float, wraps: int) -> None: ...


class PulseWrap:
    def __init__(self, meter_id: str, span_m3: float, store: WrapStore | None = None):
        self.meter_id = meter_id
        self.span_m3 = span_m3
        self.store = store
        self.last_m3, self.wraps = store.load_wrap(meter_id) if store is not None else (None, 0)

    def unwrap(self, counted_m3: float) -> float:
        """The counter's volume (``count × litres per pulse``) to a volume that keeps growing."""
        if self.last_m3 is not None and self.last_m3 > 0.75 * self.span_m3 and counted_m3 < 0.25 * self.span_m3:
            self.wraps += 1
        if counted_m3 != self.last_m3 and self.store is not None:
            self.store.save_wrap(self.meter_id, counted_m3, self.wraps)
        self.last_m3 = counted_m3
        return round(counted_m3 + self.wraps * self.span_m3, 9)
