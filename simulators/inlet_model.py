"""A live DMA inlet (bulk) meter: all its customers really took, plus what the mains lose.

The inlet sees the customers' *true* flow (a tampered or stuck customer meter hides water from its
own register, not from the inlet), the DMA's background leakage (pressure-shaped over the day, see
:mod:`simulators.network`) and main bursts, which no customer meter sees. Like the customer meter,
the register is the exact integral of the reported flow, quantized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from simulators.consumption import DAY_S, HOUR_S
from simulators.events import reported_end, require_utc
from simulators.ground_truth import GroundTruthEvent
from simulators.meter_model import MeterModel, MeterReading
from simulators.network import PRESSURE_FACTOR

_PF_CUM = np.concatenate([[0.0], np.cumsum(PRESSURE_FACTOR)])
_EPS = 1e-7


@dataclass(frozen=True, kw_only=True)
class MainBurst:
    """A burst main in the DMA: ``rate_lph`` from ``start`` until it is repaired at ``end``."""

    start: datetime
    rate_lph: float
    end: datetime | None = None

    def __post_init__(self) -> None:
        require_utc("MainBurst", self.start, self.end)

    def volume_m3(self, s1: float, s2: float) -> float:
        lo = max(s1, self.start.timestamp())
        hi = min(s2, math.inf if self.end is None else self.end.timestamp())
        return self.rate_lph / 1000.0 * max(hi - lo, 0.0) / HOUR_S

    def ground_truth(self, dma: str, data_end: datetime | None = None) -> GroundTruthEvent:
        return GroundTruthEvent("dma_burst", None, dma, self.start, reported_end(self.end, data_end), self.rate_lph)


def leakage_m3(rate_m3h: float, s: float) -> float:
    """Background leakage from the epoch to second ``s`` (mean ``rate_m3h``, shaped by pressure)."""
    days = math.floor(s / DAY_S)
    rem = s - days * DAY_S
    h = min(int(rem // HOUR_S), 23)
    part = (rem - h * HOUR_S) / HOUR_S
    return rate_m3h * (days * 24.0 + float(_PF_CUM[h]) + float(PRESSURE_FACTOR[h]) * part)


@dataclass(eq=False)
class InletMeterModel:
    meter_id: str
    dma: str
    customers: Sequence[MeterModel]
    installed: datetime
    leakage_m3h: float
    initial_m3: float = 0.0
    resolution_m3: float = 0.001
    modulus_m3: float = 100_000_000.0
    bursts: list[MainBurst] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.installed.tzinfo is None:
            raise ValueError("installed must be timezone-aware UTC")
        self._inv = round(1.0 / self.resolution_m3)
        self._s0 = self.installed.timestamp()

    def inject(self, burst: MainBurst) -> None:
        self.bursts.append(burst)

    def _exact(self, at: datetime) -> float:
        s = at.timestamp()
        customers = sum(c.true_volume_m3(at) - c.true_volume_m3(self.installed) for c in self.customers)
        leak = leakage_m3(self.leakage_m3h, s) - leakage_m3(self.leakage_m3h, self._s0)
        burst = sum(b.volume_m3(self._s0, s) for b in self.bursts)
        return self.initial_m3 + customers + leak + burst

    def volume_m3(self, at: datetime) -> float:
        counts = math.floor(self._exact(at) * self._inv + _EPS)
        return (counts % round(self.modulus_m3 * self._inv)) / self._inv

    def flow_m3h(self, at: datetime) -> float:
        s = at.timestamp()
        hour = int((s % DAY_S) // HOUR_S)
        leak = self.leakage_m3h * float(PRESSURE_FACTOR[hour])
        bursts = sum(b.rate_lph / 1000.0 for b in self.bursts if b.volume_m3(s, s + 1e-3) > 0)
        return sum(c.true_flow_m3h(at) for c in self.customers) + leak + bursts

    def read(self, at: datetime) -> MeterReading:
        volume = self.volume_m3(at)
        flow = self.flow_m3h(at)
        return MeterReading(
            meter_id=self.meter_id,
            ts=at,
            meter_time=at,
            volume_m3=volume,
            flow_m3h=flow,
            reverse_volume_m3=0.0,
            forward_volume_m3=volume,
            alarms=frozenset({"reverse_flow"} if flow < 0 else ()),
            true_flow_m3h=flow,
        )

    def ground_truth(self, until: datetime) -> list[GroundTruthEvent]:
        return [b.ground_truth(self.dma, until) for b in self.bursts if b.start <= until]
