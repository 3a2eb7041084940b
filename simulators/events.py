"""Faults injected into a live meter (:class:`simulators.meter_model.MeterModel`).

Each fault is a small immutable record of what happens, from when, until when and how much; the
meter model applies it and :meth:`Fault.ground_truth` states it in the shared ground-truth format.
Main bursts are not here: they happen in the network, not at a customer meter (see
:mod:`simulators.network` and :mod:`simulators.fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from simulators.ground_truth import GroundTruthEvent


@dataclass(frozen=True, kw_only=True)
class Fault:
    start: datetime
    end: datetime | None = None  # None: until further notice

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise ValueError(f"{type(self).__name__}: times must be timezone-aware UTC")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"{type(self).__name__} ends before it starts")

    @property
    def size(self) -> float:
        return 0.0

    def active_at(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def ground_truth(self, meter_id: str, dma: str, data_end: datetime | None = None) -> GroundTruthEvent:
        """The fault as a ground-truth event; an end after ``data_end`` is reported as ongoing (None)."""
        end = self.end if self.end is None or data_end is None or self.end <= data_end else None
        return GroundTruthEvent(self.kind, meter_id, dma, self.start, end, self.size)


@dataclass(frozen=True, kw_only=True)
class FlowFault(Fault):
    """A constant extra flow through the meter."""

    rate_lph: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate_lph < 0:
            raise ValueError("rate_lph is a magnitude; reverse flow has its own fault")

    @property
    def size(self) -> float:
        return self.rate_lph


@dataclass(frozen=True, kw_only=True)
class Leak(FlowFault):
    """A customer-side leak: continuous flow that never stops, night included."""

    kind: ClassVar[str] = "leak"


@dataclass(frozen=True, kw_only=True)
class Burst(FlowFault):
    """A burst pipe behind the meter: a large sudden flow."""

    kind: ClassVar[str] = "burst"


@dataclass(frozen=True, kw_only=True)
class ReverseFlow(FlowFault):
    """Water flowing back through the meter into the network; the net register runs backwards."""

    kind: ClassVar[str] = "reverse_flow"


@dataclass(frozen=True, kw_only=True)
class Tamper(Fault):
    """A magnet on the meter: it registers only ``registered_share`` of the true flow and says so."""

    registered_share: float = 0.0
    kind: ClassVar[str] = "tamper"

    @property
    def size(self) -> float:
        return self.registered_share


@dataclass(frozen=True, kw_only=True)
class Stuck(Fault):
    """The register stops advancing (and the meter reports no flow) while water still flows."""

    kind: ClassVar[str] = "stuck"


@dataclass(frozen=True, kw_only=True)
class Replacement(Fault):
    """The meter is exchanged at ``start``: the register restarts from ``new_register_m3``."""

    new_register_m3: float = 0.0
    kind: ClassVar[str] = "replacement"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.end is not None and self.end != self.start:
            raise ValueError("a replacement happens at an instant: leave end unset")

    def ground_truth(self, meter_id: str, dma: str, data_end: datetime | None = None) -> GroundTruthEvent:
        return GroundTruthEvent(self.kind, meter_id, dma, self.start, self.start, 0.0)


@dataclass(frozen=True, kw_only=True)
class ClockDrift(Fault):
    """The meter's clock gains ``seconds_per_day`` (loses, if negative) from ``start``."""

    seconds_per_day: float
    kind: ClassVar[str] = "clock_drift"

    @property
    def size(self) -> float:
        return self.seconds_per_day


@dataclass(frozen=True, kw_only=True)
class Dry(Fault):
    """No water in the pipe (supply off): no flow at all, and the meter's dry alarm."""

    kind: ClassVar[str] = "dry"


@dataclass(frozen=True, kw_only=True)
class LowBattery(Fault):
    kind: ClassVar[str] = "low_battery"


@dataclass(frozen=True, kw_only=True)
class MeterError(Fault):
    """The meter's self-check reports an error (its reading is still given)."""

    kind: ClassVar[str] = "meter_error"
