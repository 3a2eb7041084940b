"""The rig's Modbus meters that are more than a profile over a meter model, and a request recorder.

- :class:`PulseCounter`: a pulse-counter I/O module wired to a mechanical meter's pulse output: it
  counts whole pulses since it was wired (``litres_per_pulse`` each), in a 32-bit counter that wraps
  at 2**32 only; the gateway multiplies by litres per pulse (profile ``pulse_counter``). A count
  only rises: the meter's output is taken to pulse on forward movement only (as direction-sensing
  outputs do), so water running back gives no pulses and takes none away, and the meter's own
  register rolling over changes nothing.
- :class:`Watched`: any Modbus register source, noting when it was last asked (for the live table);
  the slot of a unit id (its ``unit_id``, which stays), whose source a technician's work changes
  (:mod:`simulators.rig.meter_work`) under the ``lock`` its transport's slots share, which a request
  takes to find the source (and its profile): a swap of two slots' sources is one step as a request
  sees it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from firmware_protocols.modbus import MeterProfile, load_profile
from simulators.meter_model import MeterModel
from simulators.modbus_unit import RegisterSource

COUNTER_MODULUS = 1 << 32


@dataclass
class PulseCounter:
    unit_id: int
    meter: MeterModel
    litres_per_pulse: float
    wired: datetime  # when the module started counting (from 0)
    profile: MeterProfile = field(init=False)

    def __post_init__(self) -> None:
        if self.litres_per_pulse <= 0:
            raise ValueError("litres_per_pulse must be positive")
        self.profile = load_profile("pulse_counter", {"litres_per_pulse": self.litres_per_pulse})
        self._at_wiring = self.meter.forward_movement_m3(self.wired)

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    def pulses(self, at: datetime) -> int:
        """Whole pulses since wiring: one per ``litres_per_pulse`` the meter turned forward."""
        litres = (self.meter.forward_movement_m3(at) - self._at_wiring) * 1000
        return math.floor(litres / self.litres_per_pulse + 1e-9) % COUNTER_MODULUS

    def registers_at(self, at: datetime) -> list[int]:
        volume = Decimal(self.pulses(at)) * Decimal(str(self.litres_per_pulse)) / 1000
        return self.profile.encode({"volume_m3": volume})


@dataclass
class Watched:
    """A register source that remembers when it was last read. ``lock``: one for all the slots of a
    transport, so that two slots' sources swapped under it change at once for a request.

    ``unit_id`` is the slot's, taken from its first source: the unit id it answers at, whichever
    meter stands in it. A swap changes the meter, not the slot's place: before, it was the source's
    own, so after a swap the slot of unit 1 said 2 (the unit its new meter had left). The transports
    fix their units as they start (ModbusRtuSlaves, ModbusTcpSimulator) and a request finds its slot
    by the unit id it came to, so nothing answered wrong; whatever asked a slot where it answers did.
    """

    source: RegisterSource
    last_request: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    unit_id: int = field(init=False)

    def __post_init__(self) -> None:
        self.unit_id = self.source.unit_id

    @property
    def profile(self) -> MeterProfile:
        with self.lock:  # read at each request (the RTU line's answer, the TCP server's hook): not mid-swap
            return self.source.profile

    def registers_at(self, at: datetime) -> list[int]:
        with self.lock:  # not between the two stores of a swap
            self.last_request = at
            source = self.source
        return source.registers_at(at)
