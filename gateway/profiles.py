"""Each meter's decoding: its Modbus profile (shared between meters with the same settings) and,
for pulse counters, the wrap-around of the module's counter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from firmware_protocols.modbus import MeterProfile, load_profile
from gateway.config import MeterConfig
from gateway.pulse import PulseWrap, WrapStore, count_m3, counter_span_m3, is_pulse_counter, max_flow_m3h


class ProfileBook:
    def __init__(self, wraps: WrapStore | None = None):
        self._profiles: dict[tuple[str, tuple[tuple[str, str], ...]], MeterProfile] = {}
        self._wraps: dict[str, PulseWrap] = {}
        self._wrap_store = wraps

    def profile(self, meter: MeterConfig) -> MeterProfile:
        key = (meter.profile, tuple(sorted((k, repr(v)) for k, v in meter.parameters.items())))
        found = self._profiles.get(key)
        if found is None:
            found = self._profiles[key] = load_profile(meter.profile, meter.parameters)
        return found

    def volume_filter(self, meter: MeterConfig) -> Callable[[float, datetime], float] | None:
        """For a pulse counter, a function that turns the decoded volume into one that never wraps."""
        profile = self.profile(meter)
        if not is_pulse_counter(profile):
            return None
        wrap = self._wraps.get(meter.meter_id)
        if wrap is None:
            wrap = self._wraps[meter.meter_id] = PulseWrap(
                meter.meter_id,
                counter_span_m3(profile),
                self._wrap_store,
                max_flow_m3h(meter.parameters),
                count_m3(profile),
            )
        return wrap.unwrap
