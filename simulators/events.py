"""Faults injected into a live meter (:class:`simulators.meter_model.MeterModel`).

Each fault is a small immutable record of what happens, from when, until when and how much; the
meter model applies it and :meth:`Fault.ground_truth` states it in the shared ground-truth format.
Main bursts are not here: they happen in the network, not at a customer meter (see
:mod:`simulators.network` and :mod:`simulators.fleet`).

A fault kind is declared as ``class Leak(FlowFault, kind="leak")``: every subclass of
:class:`Fault` is made a frozen, keyword-only dataclass, its ``kind`` the ground truth's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, dataclass_transform

from simulators.ground_truth import GroundTruthEvent


def require_utc(owner: str, start: datetime, end: datetime | None) -> None:
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise ValueError(f"{owner}: times must be timezone-aware UTC")


def reported_end(end: datetime | None, data_end: datetime | None) -> datetime | None:
    """An event's end as the ground truth states it: one after ``data_end`` is still ongoing (None)."""
    return end if end is None or data_end is None or end <= data_end else None


@dataclass_transform(frozen_default=True, kw_only_default=True)
@dataclass(frozen=True, kw_only=True)
class Fault:
    start: datetime
    end: datetime | None = None  # None: until further notice

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind:
            cls.kind = kind
        dataclass(frozen=True, kw_only=True)(cls)

    def __post_init__(self) -> None:
        require_utc(type(self).__name__, self.start, self.end)
        if self.end is not None and self.end < self.start:
            raise ValueError(f"{type(self).__name__} ends before it starts")

    @property
    def size(self) -> float:
        return 0.0

    def active_at(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def ground_truth(self, meter_id: str, dma: str, data_end: datetime | None = None) -> GroundTruthEvent:
        """The fault as a ground-truth event; an end after ``data_end`` is reported as ongoing (None)."""
        return GroundTruthEvent(self.kind, meter_id, dma, self.start, reported_end(self.end, data_end), self.size)


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


class Leak(FlowFault, kind="leak"):
    """A customer-side leak: continuous flow that never stops, night included."""


class Burst(FlowFault, kind="burst"):
    """A burst pipe behind the meter: a large sudden flow."""


class ReverseFlow(FlowFault, kind="reverse_flow"):
    """Water flowing back through the meter into the network; the net register runs backwards."""


class Tamper(Fault, kind="tamper"):
    """A magnet on the meter: it registers only ``registered_share`` of the true flow and says so."""

    registered_share: float = 0.0

    @property
    def size(self) -> float:
        return self.registered_share


class Stuck(Fault, kind="stuck"):
    """The register stops advancing (and the meter reports no flow) while water still flows."""


class Replacement(Fault, kind="replacement"):
    """The meter is exchanged at ``start``: the register restarts from ``new_register_m3``."""

    new_register_m3: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.end is not None and self.end != self.start:
            raise ValueError("a replacement happens at an instant: leave end unset")

    def ground_truth(self, meter_id: str, dma: str, data_end: datetime | None = None) -> GroundTruthEvent:
        return GroundTruthEvent(self.kind, meter_id, dma, self.start, self.start, 0.0)


class ClockDrift(Fault, kind="clock_drift"):
    """The meter's clock gains ``seconds_per_day`` (loses, if negative) from ``start``."""

    seconds_per_day: float

    @property
    def size(self) -> float:
        return self.seconds_per_day


class Dry(Fault, kind="dry"):
    """No water in the pipe (supply off): no flow at all, and the meter's dry alarm."""


class LowBattery(Fault, kind="low_battery"):
    pass


class MeterError(Fault, kind="meter_error"):
    """The meter's self-check reports an error (its reading is still given)."""
