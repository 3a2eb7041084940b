"""Pulse-counter wrap-around: a module's 32-bit counter rolls over to 0; the meter's register must not.

The gateway sees successive counts, so a count far below the previous one (more than half the
counter's span) is a wrap: add the span from then on. The previous count and the number of wraps
are kept in the spool's database (:class:`WrapStore`), so a restart does not forget a wrap.
"""

from __future__ import annotations

from typing import Protocol


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
        if self.last_m3 is not None and self.last_m3 - counted_m3 > self.span_m3 / 2:
            self.wraps += 1
        if counted_m3 != self.last_m3 and self.store is not None:
            self.store.save_wrap(self.meter_id, counted_m3, self.wraps)
        self.last_m3 = counted_m3
        return round(counted_m3 + self.wraps * self.span_m3, 9)
