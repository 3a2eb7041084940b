"""Pulse counters: a module that counts a meter's pulses, read over Modbus like any meter.

The module's counter is finite (2**32 for a u32 count): it wraps to 0, and it also restarts at 0 on
its own (a power cycle without a kept count, a module replaced). The gateway publishes a register
that must do neither, so it follows successive counts and judges each change by the water that
could have flowed since the previous read: the meter's maximum flow (``max_flow_m3h``, a meter
parameter; :data:`DEFAULT_MAX_FLOW_M3H` when not given) times the time between the reads, plus the
slack VEE allows (``collector.vee.rules`` judges a register's rollover the same way). Counts are
taken modulo the span, so each change is a forward advance ``d`` or a step back ``span - d``:

- an advance that fits (``d`` ≤ allowed) is water; when the count fell, it wrapped: one span more;
- a step back that fits (an up/down counter or noise, across 0 or not) is published as it is, a
  register a little lower, for VEE to judge: no span added, nothing invented;
- a fall to a count that could have been counted from 0 since the previous read is the module
  counting again from 0: the published register carries on from the last one published, and the
  new count adds to it (the water before the restart is kept; a utility's register does not fall
  because a module lost power). Before, 3.3e9 → 0 at 0.1 L a pulse was taken for a wrap: +99,497 m³
  in one minute, kept for good. If the next count is back where it was before (one bad read of a
  small count, not a restart), it carries on from there, not counted twice (the state before the
  restart is kept in the spool until that next read: a gateway restart in between lost it, and the
  next count was published on the restart's offset, the whole count a second time);
- anything else (a jump up too fast, a fall to a count that no restart explains) is published as
  the count says, on the same offset, and the offset is not touched: VEE judges it, and the next
  read that makes sense is not shifted by it.

The published register is ``offset + count × litres per pulse``; the count last read, the offset,
the time of that read, one count's volume and the state before a read taken for a restart are kept
in the spool's database (:class:`WrapStore`), so a gateway restart (or a reload) judges the first
count against the last one before it. A meter whose ``litres_per_pulse`` changed carries on from
its last register, its pulses from then on counted at the new rate (the offset takes up the
difference): neither a jump nor a fall. A state kept by an
earlier version (a number of wraps, no time) is taken as ``wraps × span`` with an unknown time: only
a count that did not move, or a restart at exactly 0, is judged then; anything else is published as
it is. A state kept without one count's volume (65273a0's) is taken at the present
``litres_per_pulse``, as those wraps are.

Source: the MQTT contract tells a pulse count (``source.protocol`` "pulse") from a meter's own
register, whatever bus carried it; the bus name and the module's unit id stay as they are.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol

from aquami.contracts import reads
from firmware_protocols.modbus import MeterProfile
from gateway.transport import PollError

# Above Q4 of a DN50 meter (ISO 4064: Q3 63 m³/h, Q4 = 1.25 × Q3 = 78.75 m³/h), the largest meter one
# would expect behind a pulse module on a gateway; a higher bound only widens, by flow × time, the
# window near the top of the span where a restart could be taken for a wrap, a lower one makes a
# real wrap after a long outage a restart. A bulk meter sets its own with ``max_flow_m3h``.
DEFAULT_MAX_FLOW_M3H = Decimal(100)
MAX_FLOW_SLACK = 0.05  # as VEE's max_flow_slack: a meter runs a little over its rating


def is_pulse_counter(profile: MeterProfile) -> bool:
    """A profile whose volume is a count scaled by the meter's ``litres_per_pulse`` (``pulse_counter``
    or a utility's own module): told by the profile, not by the meter's parameters, so a number given
    to a meter's own register cannot make it a pulse source (the same test decides that the wrap
    applies, :meth:`gateway.profiles.ProfileBook.volume_filter`)."""
    volume = profile.field_named("volume_m3")
    return volume is not None and "litres_per_pulse" in volume.scale_parameters


def source_protocol(profile: MeterProfile, bus_protocol: reads.Protocol) -> reads.Protocol:
    """``source.protocol`` of a meter's readings: "pulse" for a pulse counter, else the bus's."""
    return "pulse" if is_pulse_counter(profile) else bus_protocol


def count_m3(profile: MeterProfile) -> float:
    """One count's volume: the volume field's scale (litres per pulse / 1000)."""
    volume = profile.field_named("volume_m3")
    assert volume is not None  # (a profile without one is refused when it loads)
    return float(volume.scale)


def counter_span_m3(profile: MeterProfile) -> float:
    """Where the module's count wraps, in m³: ``2**bits × scale`` of the volume field's type (a u16
    count wraps at 65,536 pulses, not 2**32: 65,530 → 4 was published as 65.53 → 0.004 m³). A signed
    count wraps into negatives, which no reading takes: its span is its positive range; an f32 count
    is exact to 2**24."""
    volume = profile.field_named("volume_m3")
    assert volume is not None  # (a profile without one is refused when it loads)
    bits = {"u16": 16, "s16": 15, "u32": 32, "s32": 31, "u64": 64, "f32": 24}[volume.type]
    return float(volume.scale * 2**bits)


def max_flow_m3h(parameters: dict[str, Any]) -> float:
    """A pulse counter's ``max_flow_m3h`` parameter, or the default; ValueError names a bad one."""
    given = parameters.get("max_flow_m3h", DEFAULT_MAX_FLOW_M3H)
    try:
        number = Decimal(str(given)) if not isinstance(given, bool) else Decimal("NaN")
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number <= 0:
        raise ValueError(f"parameters.max_flow_m3h = {given!r} must be a number of m3/h above zero")
    return float(number)


class PulseState(NamedTuple):
    """A pulse counter's state as the spool keeps it."""

    last_m3: float
    offset_m3: float
    last_at: datetime
    count_m3: float | None  # None: kept by 65273a0, which did not store it
    before_restart: tuple[float, float] | None  # (count, offset) before a read taken for a restart


class WrapStore(Protocol):
    def load_pulse(self, meter_id: str) -> PulseState | None: ...

    def save_pulse(
        self,
        meter_id: str,
        last_m3: float,
        offset_m3: float,
        at: datetime,
        count_m3: float,
        before_restart: tuple[float, float] | None = None,
    ) -> None: ...

    def load_wrap(self, meter_id: str) -> tuple[float | None, int]: ...


class PulseWrap:
    """One pulse counter's published register. Built, and each count unwrapped, off the event loop
    (gateway.modbus_transport runs both in a thread): it reads and writes its state in the spool."""

    def __init__(
        self,
        meter_id: str,
        span_m3: float,
        store: WrapStore | None = None,
        max_flow_m3h: float = float(DEFAULT_MAX_FLOW_M3H),
        count_m3: float | None = None,
    ):
        self.meter_id = meter_id
        self.span_m3 = span_m3
        self.count_m3 = span_m3 if count_m3 is None else count_m3  # one count's volume (the scale)
        self.store = store
        self.max_flow_m3h = max_flow_m3h
        self.last_m3: float | None = None
        self.offset_m3 = 0.0
        self.last_at: datetime | None = None
        # (count, offset) before a read taken for a restart, until the next read (kept in the store)
        self._before_restart: tuple[float, float] | None = None
        if store is not None:
            kept = store.load_pulse(meter_id)
            if kept is not None:
                self.last_m3, self.offset_m3, self.last_at, kept_count_m3, self._before_restart = kept
                # litres_per_pulse changed: pulses from now on count at the new rate. A state kept without
                # its rate (65273a0's) is taken at the present one, as an earlier version's wraps are below
                if kept_count_m3 is not None and kept_count_m3 != self.count_m3:
                    rebased = self.last_m3 * self.count_m3 / kept_count_m3  # the same count, at the new rate
                    self.offset_m3 += self.last_m3 - rebased  # the register carries on from where it was
                    self.last_m3 = rebased
                    if self._before_restart is not None:  # (as is the state before a restart)
                        before_m3, before_offset = self._before_restart
                        before_rebased = before_m3 * self.count_m3 / kept_count_m3
                        self._before_restart = (before_rebased, before_offset + before_m3 - before_rebased)
            else:  # an earlier version's state: wraps, no time
                self.last_m3, wraps = store.load_wrap(meter_id)
                self.offset_m3 = wraps * span_m3

    def _judge(self, last: float, offset: float, counted_m3: float, allowed: float) -> tuple[float | None, bool]:
        """The offset after ``last`` → ``counted_m3`` (None when no change of the count explains it),
        and whether that change is the module counting again from 0."""
        forward = (counted_m3 - last) % self.span_m3
        back = self.span_m3 - forward
        published_before = offset + last
        if forward <= allowed:  # water; past the top of the counter, a wrap
            return offset + (self.span_m3 if counted_m3 < last else 0.0), False
        if back <= allowed:  # a step back, published as it is (across 0: one span less)
            if counted_m3 > last:
                if published_before - back < 0:  # below anything counted: no register to publish
                    raise PollError(f"{self.meter_id}: the pulse count stepped back past 0 ({last} -> {counted_m3})")
                return offset - self.span_m3, False
            return offset, False
        if counted_m3 < last and counted_m3 <= allowed:  # counting again from 0
            return published_before, True
        return None, False

    def _allowed_m3(self, at: datetime) -> float:
        """The most water the meter can pass between the previous read and ``at``."""
        if self.last_at is None:
            return 0.0
        hours = max((at - self.last_at).total_seconds(), 0.0) / 3600
        return self.max_flow_m3h * hours * (1 + MAX_FLOW_SLACK)

    def unwrap(self, counted_m3: float, at: datetime) -> float:
        """The counter's volume (``count × litres per pulse``) read at ``at`` to the published register."""
        offset = self.offset_m3
        undo, self._before_restart = self._before_restart, None
        if self.last_m3 is not None:
            allowed = self._allowed_m3(at) + 1e-9  # (float: a count that did not move is 0, not -1e-16)
            judged, restarted = self._judge(self.last_m3, offset, counted_m3, allowed)
            if judged is None and undo is not None and 0 <= counted_m3 - undo[0] <= allowed:
                # the restart was one bad read of a small count: the count is back where it was before
                # it, so it carries on from there (on the restart's offset it would count twice)
                judged = undo[1]
            if restarted:
                self._before_restart = (self.last_m3, offset)
            if judged is not None:  # else unexplained: as the count says, on the same offset, for VEE
                offset = judged
        self.last_m3, self.offset_m3, self.last_at = counted_m3, offset, at
        if self.store is not None:
            self.store.save_pulse(self.meter_id, counted_m3, offset, at, self.count_m3, self._before_restart)
        return round(offset + counted_m3, 9)
