"""Faults a technician can inject into a running rig, and clear again: one vocabulary for both kinds.

- Wire faults (:class:`~simulators.wire_faults.WireFaultKind`): ``no_reply``, ``bad_checksum``,
  ``truncated``, ``garbled``, ``slow`` (``delay_s``), ``absent`` (the meter is gone; with
  ``duration_s`` it comes back by itself). Options: ``probability``, ``flips`` (garbled).
- Meter faults (:mod:`simulators.events`), from now on: ``leak``, ``burst``, ``reverse_flow``
  (``rate_lph``), ``tamper`` (``registered_share``), ``stuck``, ``dry``, ``low_battery``,
  ``meter_error``; on a ``dma_inlet``: ``main_burst`` (``rate_lph``). ``duration_s`` ends it by itself.
- A technician's work at the meters (:data:`WORK_KINDS`), until cleared or for ``duration_s``: ``swap_address``
  (``with_meter``: another meter of the same transport) sets the two meters each to the other's
  address (M-Bus primary address, Modbus unit id), so each answers the other's polls;
  ``exchange`` takes the meter off and puts a new one in its place at its address, with a new
  ``identification`` (M-Bus) or ``serial_number`` (Modbus; both derived from the meter's id and the
  fault's unless given) and its register from ``volume_m3`` (0 unless given) at the exchange, counting
  the connection's water from then on. For meters that carry who they are in their answers: M-Bus
  water meters, smart water meters and DMA inlets on Modbus; refused for wM-Bus radio meters and
  pulse counters (:func:`refuse_work`). With ``duration_s`` the work is undone by itself at its end, as
  a clear undoes it (the rig checks every :data:`~simulators.rig.runner.WORK_CHECK_S`).

Options are finite numbers; ``duration_s`` is at most 365 days and ``rate_lph`` at most 1,000,000 l/h
(a fault's end must stay a date, and its flow fit the registers).

Clearing a meter fault ends it now (the water that went through stays on the register, as it would
on a real meter); clearing a wire fault removes its rule. A meter fault that changes the water starts
at the meter model's next step (within a minute: the rig file's ``[rig] step_s``, 60 s unless it says)
and lasts ``duration_s`` rounded up to whole steps (the answer's ``since`` and ``until`` say when);
cleared, it ends at the next step. So a register already read never goes back, and a fault shorter
than a step still shows for one step. Clearing a ``swap_address`` swaps the two meters back;
clearing an ``exchange`` takes the new meter off and puts the old one back at its address, its register
reading what the connection's water made it, as if it had never been taken off (the meter model is the
connection's water; the new meter's register goes with it).
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from firmware_protocols.modbus.profile import serial_value
from simulators.events import Burst, Dry, Fault, Leak, LowBattery, MeterError, ReverseFlow, Stuck, Tamper
from simulators.inlet_model import InletMeterModel, MainBurst
from simulators.meter_model import MeterModel
from simulators.wire_faults import ALL_KINDS, Outcome, WireFault, WireFaultKind, WireFaultPlan, flip_last_byte

WIRE_KINDS = tuple(k.value for k in WireFaultKind)
METER_KINDS = ("leak", "burst", "reverse_flow", "tamper", "stuck", "dry", "low_battery", "meter_error")
INLET_KINDS = ("main_burst",)
#: what a technician does at the meters: no fault of the wire or the water, but another meter answering
WORK_KINDS = ("swap_address", "exchange")
FAULT_KINDS = WIRE_KINDS + METER_KINDS + INLET_KINDS + WORK_KINDS
_FLOW_DEFAULTS = {"leak": 20.0, "burst": 1500.0, "reverse_flow": 60.0, "main_burst": 5000.0}
_WORK_OPTIONS = {
    "swap_address": {"with_meter", "duration_s"},
    "exchange": {"identification", "serial_number", "volume_m3", "duration_s"},
}
_OPTIONS = {
    "kind", "probability", "delay_s", "flips", "duration_s", "rate_lph", "registered_share",
    "with_meter", "identification", "serial_number", "volume_m3",
}  # fmt: skip
#: The meter kinds whose answers say which meter they are (an M-Bus identification, a Modbus serial number)
WORK_METER_KINDS = ("mbus_water", "smart_water_meter", "dma_inlet")
#: The largest register an exchanged meter starts from (a rig file's ``initial_m3`` too)
MAX_VOLUME_M3 = 99_999.0
#: Upper bounds that keep a fault's end a date and its flow a number the registers can show.
MAX_DURATION_S = 365 * 86_400.0
MAX_RATE_LPH = 1_000_000.0


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    probability: float = 1.0
    delay_s: float = 0.5
    flips: int = 1
    duration_s: float | None = None
    rate_lph: float | None = None
    registered_share: float = 0.0
    with_meter: str | None = None  # swap_address: the other meter
    identification: str | None = None  # exchange on M-Bus: the new meter's (None until the rig gives one)
    serial_number: str | None = None  # exchange on Modbus: the new meter's (None until the rig gives one)
    volume_m3: float | None = None  # exchange: the new meter's register at the exchange

    @property
    def is_wire(self) -> bool:
        return self.kind in WIRE_KINDS

    @property
    def is_work(self) -> bool:
        """A technician's work at the meters (:data:`WORK_KINDS`), done on the transports, not the water."""
        return self.kind in WORK_KINDS

    def to_json(self) -> dict[str, Any]:
        """The kind and the options that matter to it."""
        if self.is_work:
            given = {k: getattr(self, k) for k in sorted(_WORK_OPTIONS[self.kind]) if getattr(self, k) is not None}
            return {"kind": self.kind, **given}
        relevant = {"duration_s"}
        if self.is_wire:
            relevant |= {"probability"} | ({"delay_s"} if self.kind == "slow" else set())
            relevant |= {"flips"} if self.kind == "garbled" else set()
        else:
            relevant |= {"rate_lph"} if self.rate_lph is not None else set()
            relevant |= {"registered_share"} if self.kind == "tamper" else set()
        return {"kind": self.kind, **{k: getattr(self, k) for k in sorted(relevant) if getattr(self, k) is not None}}


def options_of(kind: str, meter_kind: str | None = None) -> set[str]:
    """The options a fault of ``kind`` takes (every fault: ``duration_s``); an ``exchange`` on a
    ``meter_kind``: ``identification`` (M-Bus) or ``serial_number`` (Modbus)."""
    if kind == "exchange" and meter_kind is not None:
        return {"identification" if meter_kind == "mbus_water" else "serial_number", "volume_m3", "duration_s"}
    if kind in WORK_KINDS:
        return set(_WORK_OPTIONS[kind])
    if kind in WIRE_KINDS:
        return (
            {"duration_s", "probability"}
            | ({"delay_s"} if kind == "slow" else set())
            | ({"flips"} if kind == "garbled" else set())
        )
    if kind in _FLOW_DEFAULTS:
        return {"duration_s", "rate_lph"}
    return {"duration_s", "registered_share"} if kind == "tamper" else {"duration_s"}


def _number(d: Mapping[str, Any], key: str, default: float | None, low: float, high: float, unit: str = "") -> Any:
    """The option ``key`` as a float within ``low..high``; ValueError names the field (NaN and ∞ included)."""
    value = d.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{key}: {value!r} is not a finite number")
    if not low <= value <= high:
        raise ValueError(f"{key}: {value!r} is outside {_plain(low)}..{_plain(high)}{unit}")
    return float(value)


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def parse_fault(d: Any, meter_kind: str, *, only_its_options: bool = True) -> FaultSpec:
    """A fault request (TOML table or JSON object) for a meter of ``meter_kind``; ValueError names the field.

    An option the kind does not take is refused, unless ``only_its_options`` is false: the state
    file keeps every option of a fault (:mod:`simulators.rig.state`), as files written before did."""
    if not isinstance(d, Mapping):
        raise ValueError(f"expected a table with a kind, got {d!r}")
    unknown = set(d) - _OPTIONS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_OPTIONS))})")
    kind = d.get("kind")
    allowed = WIRE_KINDS + (INLET_KINDS if meter_kind == "dma_inlet" else METER_KINDS) + WORK_KINDS
    if kind not in allowed:
        raise ValueError(f"kind: {kind!r} is not a fault of a {meter_kind} meter ({', '.join(allowed)})")
    if kind in WORK_KINDS:
        return _parse_work(d, kind, meter_kind, only_its_options)
    idle = sorted(set(d) - {"kind"} - options_of(kind))
    # taken and ignored before: `leak --set delay_s=2` injected a leak as if asked for one
    if idle and only_its_options:
        said = f"{', '.join(idle)} {'does' if len(idle) == 1 else 'do'} not apply to a {kind} fault"
        raise ValueError(f"{said} (its options: {', '.join(sorted(options_of(kind)))})")
    flips = d.get("flips", 1)
    if isinstance(flips, bool) or not isinstance(flips, int) or flips < 1:
        raise ValueError(f"flips: {flips!r} must be a whole number ≥ 1")
    return FaultSpec(
        kind=kind,
        probability=_number(d, "probability", 1.0, 0.0, 1.0),
        delay_s=_number(d, "delay_s", 0.5, 0.0, 60.0),
        flips=flips,
        duration_s=_duration(d),
        rate_lph=_number(d, "rate_lph", _FLOW_DEFAULTS.get(kind), 0.0, MAX_RATE_LPH, " l/h"),
        registered_share=_number(d, "registered_share", 0.0, 0.0, 1.0),
    )


def refuse_work(kind: str, meter_kind: str) -> None:
    """ValueError, in words, for a technician's work on a meter whose answers do not say which it is."""
    if meter_kind == "wmbus_oms":
        raise ValueError(
            f"kind: {kind} is not a fault of a wmbus_oms meter: a radio meter has no address a gateway polls "
            "(it sends its own identification, with its own key); a new one is a [[meter]] of its own"
        )
    if meter_kind not in WORK_METER_KINDS:
        raise ValueError(
            f"kind: {kind} is not a fault of a {meter_kind} meter: a pulse counter's registers do not say which "
            f"meter is wired to it, so no gateway can tell (for {', '.join(WORK_METER_KINDS)})"
        )


def _present(d: Mapping[str, Any], key: str) -> bool:
    """``key`` given (a state file writes every option, those a fault does not take as null)."""
    return d.get(key) is not None


def _parse_work(d: Mapping[str, Any], kind: str, meter_kind: str, only_its_options: bool) -> FaultSpec:
    refuse_work(kind, meter_kind)
    takes = options_of(kind, meter_kind)
    idle = sorted(k for k in set(d) - {"kind"} - takes if _present(d, k))
    if idle and only_its_options:
        article = "an" if kind == "exchange" else "a"
        said = f"{', '.join(idle)} {'does' if len(idle) == 1 else 'do'} not apply to {article} {kind} fault"
        on = f" on a {meter_kind} meter" if kind == "exchange" else ""
        raise ValueError(f"{said}{on} (its options: {', '.join(sorted(takes))})")
    duration = _duration(d)
    if kind == "swap_address":
        other = d.get("with_meter")
        if not isinstance(other, str) or not other:
            raise ValueError(f"with_meter: expected the id of the meter to swap addresses with, got {other!r}")
        return FaultSpec(kind=kind, with_meter=other, duration_s=duration)
    identification = serial = None
    if "identification" in takes and _present(d, "identification"):
        identification = _identification(d["identification"])
    if "serial_number" in takes and _present(d, "serial_number"):
        serial = _serial_number(d["serial_number"])
    volume = _number(d, "volume_m3", 0.0, 0.0, MAX_VOLUME_M3, " m3")
    return FaultSpec(
        kind=kind, identification=identification, serial_number=serial, volume_m3=volume, duration_s=duration
    )


def _duration(d: Mapping[str, Any]) -> float | None:
    """The fault's ``duration_s``, None for none (it stays until cleared)."""
    unit = " s (365 days; leave it out for no end)"
    duration: float | None = _number(d, "duration_s", None, 0.001, MAX_DURATION_S, unit)
    return duration


def _identification(value: Any) -> str:
    """An M-Bus identification: 8 decimal digits, given as text or (``--set identification=00012345``
    arrives as the number 12345) as a whole number below 10**8, written with its leading zeros."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**8:
        return f"{value:08d}"
    if isinstance(value, str) and len(value) == 8 and value.isascii() and value.isdigit():
        return value
    raise ValueError(f"identification: {value!r} is not 8 decimal digits 0-9")


def _serial_number(value: Any) -> str:
    """A Modbus serial number: decimal digits that fit the profile's u32 register, as the number it holds."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"serial_number: expected decimal digits, got {value!r}")
    try:
        return str(serial_value(value, "u32"))
    except ValueError as error:
        raise ValueError(f"serial_number: {error}") from None


class LivePlan(WireFaultPlan):
    """A :class:`WireFaultPlan` whose rules come and go while a transport uses it (thread-safe).

    Each rule is its own one-rule plan (its own limit count and random stream), applied in the
    order added; :attr:`faults` lists the rules in force, for transports that look at them. A rule's
    stream is seeded by the seed, the ``stream`` name (the rig's transport) and the rule's number, so
    rules on different transports do not fire in lock-step.
    """

    def __init__(self, seed: int = 0, stream: str = "") -> None:
        super().__init__([], seed)
        self._stream = zlib.crc32(stream.encode())
        self._lock = threading.Lock()
        self._plans: dict[int, WireFaultPlan] = {}
        self._next = 0

    def add(self, rule: WireFault) -> int:
        with self._lock:
            self._next += 1
            seed = int(np.random.SeedSequence([self.seed, self._stream, self._next]).generate_state(1)[0])
            self._plans[self._next] = WireFaultPlan([rule], seed=seed)
            self.faults = [p.faults[0] for p in self._plans.values()]
            return self._next

    def remove(self, handle: int) -> None:
        with self._lock:
            self._plans.pop(handle, None)
            self.faults = [p.faults[0] for p in self._plans.values()]

    def apply(
        self,
        reply: bytes | None,
        address: int | None,
        now: datetime,
        corrupt_checksum: Callable[[bytes], bytes] = flip_last_byte,
        kinds: Container[WireFaultKind] = ALL_KINDS,
    ) -> Outcome:
        with self._lock:
            out, delay = reply, 0.0
            applied: list[WireFaultKind] = []
            for plan in self._plans.values():
                if out is None:
                    break
                outcome = plan.apply(out, address, now, corrupt_checksum, kinds)
                out, delay = outcome.reply, delay + outcome.delay_s
                applied.extend(outcome.applied)
                self.log.extend(plan.log)
                plan.log.clear()
            return Outcome(out, delay, tuple(applied))


def wire_rule(spec: FaultSpec, address: int, now: datetime) -> WireFault:
    end = None if spec.duration_s is None else now + timedelta(seconds=spec.duration_s)
    return WireFault(
        WireFaultKind(spec.kind),
        address=address,
        probability=spec.probability,
        start=now,
        end=end,
        delay_s=spec.delay_s,
        flips=spec.flips,
    )


def meter_fault(spec: FaultSpec, now: datetime) -> Fault | MainBurst:
    end = None if spec.duration_s is None else now + timedelta(seconds=spec.duration_s)
    rate = spec.rate_lph or 0.0
    flows: dict[str, type[Leak | Burst | ReverseFlow]] = {"leak": Leak, "burst": Burst, "reverse_flow": ReverseFlow}
    states: dict[str, type[Stuck | Dry | LowBattery | MeterError]] = {
        "stuck": Stuck, "dry": Dry, "low_battery": LowBattery, "meter_error": MeterError,
    }  # fmt: skip
    if spec.kind in flows:
        return flows[spec.kind](start=now, end=end, rate_lph=rate)
    if spec.kind in states:
        return states[spec.kind](start=now, end=end)
    if spec.kind == "tamper":
        return Tamper(start=now, end=end, registered_share=spec.registered_share)
    if spec.kind == "main_burst":
        return MainBurst(start=now, end=end, rate_lph=rate)
    raise ValueError(f"{spec.kind}: not a meter fault")


def inject_meter_fault(model: MeterModel | InletMeterModel, fault: Fault | MainBurst) -> Fault | MainBurst:
    """Inject ``fault``; returns it as the model applies it (a customer meter's starts on a step boundary)."""
    if isinstance(model, InletMeterModel):
        if not isinstance(fault, MainBurst):
            raise ValueError("a DMA inlet meter takes main bursts only")
        model.inject(fault)
        return fault
    if isinstance(fault, MainBurst):
        raise ValueError("main bursts happen at a DMA inlet")
    return model.inject(fault)


def end_meter_fault(model: MeterModel | InletMeterModel, fault: Fault | MainBurst, now: datetime) -> datetime | None:
    """End ``fault`` at ``now`` (if still going): its past stays, as the water already went through.
    Returns its end as the meter applies it (a fault that changes the water ends at the step after
    ``now``), or None for a fault the meter does not hold."""
    if isinstance(model, InletMeterModel):
        if fault.end is not None and fault.end <= now:
            return fault.end
        if fault in model.bursts and isinstance(fault, MainBurst):
            ended = replace(fault, end=max(now, fault.start))
            model.bursts[model.bursts.index(fault)] = ended
            return ended.end
        return None
    if fault in model.faults and isinstance(fault, Fault):
        return model.end_fault(fault, now).end  # the model's own, thread-safe: a transport may be reading it
    return None
