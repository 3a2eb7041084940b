"""Faults a technician can inject into a running rig, and clear again: one vocabulary for both kinds.

- Wire faults (:class:`~simulators.wire_faults.WireFaultKind`): ``no_reply``, ``bad_checksum``,
  ``truncated``, ``garbled``, ``slow`` (``delay_s``), ``absent`` (the meter is gone; with
  ``duration_s`` it comes back by itself). Options: ``probability``, ``flips`` (garbled).
- Meter faults (:mod:`simulators.events`), from now on: ``leak``, ``burst``, ``reverse_flow``
  (``rate_lph``), ``tamper`` (``registered_share``), ``stuck``, ``dry``, ``low_battery``,
  ``meter_error``; on a ``dma_inlet``: ``main_burst`` (``rate_lph``). ``duration_s`` ends it by itself.

Options are finite numbers; ``duration_s`` is at most 365 days and ``rate_lph`` at most 1,000,000 l/h
(a fault's end must stay a date, and its flow fit the registers).

Clearing a meter fault ends it now (the water that went through stays on the register, as it would
on a real meter); clearing a wire fault removes its rule. A meter fault that changes the water starts
at the meter model's next step (within a minute: the rig file's ``[rig] step_s``, 60 s unless it says)
and lasts ``duration_s`` rounded up to whole steps (the answer's ``since`` and ``until`` say when);
cleared, it ends at the next step. So a register already read never goes back, and a fault shorter
than a step still shows for one step.
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

from simulators.events import Burst, Dry, Fault, Leak, LowBattery, MeterError, ReverseFlow, Stuck, Tamper
from simulators.inlet_model import InletMeterModel, MainBurst
from simulators.meter_model import MeterModel
from simulators.wire_faults import ALL_KINDS, Outcome, WireFault, WireFaultKind, WireFaultPlan, flip_last_byte

WIRE_KINDS = tuple(k.value for k in WireFaultKind)
METER_KINDS = ("leak", "burst", "reverse_flow", "tamper", "stuck", "dry", "low_battery", "meter_error")
INLET_KINDS = ("main_burst",)
FAULT_KINDS = WIRE_KINDS + METER_KINDS + INLET_KINDS
_FLOW_DEFAULTS = {"leak": 20.0, "burst": 1500.0, "reverse_flow": 60.0, "main_burst": 5000.0}
_OPTIONS = {"kind", "probability", "delay_s", "flips", "duration_s", "rate_lph", "registered_share"}
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

    @property
    def is_wire(self) -> bool:
        return self.kind in WIRE_KINDS

    def to_json(self) -> dict[str, Any]:
        """The kind and the options that matter to it."""
        relevant = {"duration_s"}
        if self.is_wire:
            relevant |= {"probability"} | ({"delay_s"} if self.kind == "slow" else set())
            relevant |= {"flips"} if self.kind == "garbled" else set()
        else:
            relevant |= {"rate_lph"} if self.rate_lph is not None else set()
            relevant |= {"registered_share"} if self.kind == "tamper" else set()
        return {"kind": self.kind, **{k: getattr(self, k) for k in sorted(relevant) if getattr(self, k) is not None}}


def options_of(kind: str) -> set[str]:
    """The options a fault of ``kind`` takes (every fault: ``duration_s``)."""
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
    allowed = WIRE_KINDS + (INLET_KINDS if meter_kind == "dma_inlet" else METER_KINDS)
    if kind not in allowed:
        raise ValueError(f"kind: {kind!r} is not a fault of a {meter_kind} meter ({', '.join(allowed)})")
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
        duration_s=_number(d, "duration_s", None, 0.001, MAX_DURATION_S, " s (365 days; leave it out for no end)"),
        rate_lph=_number(d, "rate_lph", _FLOW_DEFAULTS.get(kind), 0.0, MAX_RATE_LPH, " l/h"),
        registered_share=_number(d, "registered_share", 0.0, 0.0, 1.0),
    )


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
