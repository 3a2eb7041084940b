"""A live DMA inlet (bulk) meter: all its customers really took, plus what the mains lose.

The inlet sees the customers' *true* flow (a tampered or stuck customer meter hides water from its
own register, not from the inlet), the DMA's background leakage (pressure-shaped over the day, see
:mod:`simulators.network`) and main bursts, which no customer meter sees. Like the customer meter,
the register is the exact integral of the reported flow, quantized.

Its flow runs backwards when customers send more back into the main (a reverse flow fault) than the
district draws and loses. The net register (``volume_m3``, what the district's balance counts as
supply) then falls; the forward totaliser counts only the water that went in and the reverse
totaliser only what came back out, each the exact integral of its side of the flow. Only days on
which some customer's reverse flow is on can run backwards: only they are worked out piece by piece.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from simulators.consumption import DAY_S, HOUR_S
from simulators.events import Fault, ReverseFlow, reported_end, require_utc
from simulators.ground_truth import GroundTruthEvent
from simulators.meter_model import MeterModel, MeterReading, refuse_installed_before_epoch
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


#: A fault with its owner: a customer's index in the inlet's list, or -1 for the inlet's own bursts.
_Owned = tuple[int, Fault | MainBurst]


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
        refuse_installed_before_epoch(self.meter_id, self.installed)  # as MeterModel refuses its own
        steps = {c.step_s for c in self.customers}
        if len(steps) > 1:
            raise ValueError(f"the customers' meters step at {sorted(steps)} s: the inlet needs them to step alike")
        self._step = steps.pop() if steps else 60
        self._inv = round(1.0 / self.resolution_m3)
        self._s0 = self.installed.timestamp()
        self._lock = threading.RLock()
        self._reverse_by_day: dict[int, float] = {}  # backward volume of each whole day worked out
        self._seen: frozenset[_Owned] = frozenset()  # the faults those days were worked out with

    def inject(self, burst: MainBurst) -> None:
        self.bursts.append(burst)

    # ---- the backward side ------------------------------------------------------------------------

    def _faults(self) -> frozenset[_Owned]:
        """Every fault that shapes the flow, with its owner (a customer's index; -1: the inlet's bursts)."""
        customers = frozenset((i, f) for i, c in enumerate(self.customers) for f in list(c.faults))
        return customers | frozenset((-1, b) for b in list(self.bursts))

    def _forget_changes(self) -> None:
        """Drop the days a fault changed since they were worked out: from its start, or for one
        whose end alone changed (a fault cleared), from the earlier of its two ends."""
        now = self._faults()
        changed = now ^ self._seen
        if not changed:
            return

        def without_end(x: _Owned) -> _Owned:
            return x[0], dataclasses.replace(x[1], end=None)

        def end_s(x: _Owned) -> float:
            return math.inf if x[1].end is None else x[1].end.timestamp()

        since = math.inf
        for x in changed:
            partners = [y for y in changed if y is not x and without_end(y) == without_end(x)]
            since = min(since, min(end_s(x), *map(end_s, partners)) if partners else x[1].start.timestamp())
        if math.isfinite(since):
            first = math.floor(since / DAY_S)
            self._reverse_by_day = {d: v for d, v in self._reverse_by_day.items() if d < first}
        self._seen = now

    def _reverse_days(self, s: float) -> list[int]:
        """The days up to second ``s`` on which some customer's reverse flow is on (after installation)."""
        days: set[int] = set()
        for c in self.customers:
            for f in list(c.faults):
                if isinstance(f, ReverseFlow):
                    a = max(f.start.timestamp(), self._s0)
                    b = min(s, math.inf if f.end is None else f.end.timestamp())
                    if a < b:
                        days.update(range(math.floor(a / DAY_S), math.ceil(b / DAY_S)))
        return sorted(days)

    def _pieces(self, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Day ``d`` in pieces of constant flow: their edges (n+1), flow (m3/s, n) and the cumulative
        backward volume at each edge (n+1)."""
        day0 = d * DAY_S
        step = self._step
        per_day = DAY_S // step
        inside = [
            t
            for b in self.bursts
            for t in (b.start.timestamp(), math.inf if b.end is None else b.end.timestamp())
            if day0 < t < day0 + DAY_S
        ]
        if day0 < self._s0 < day0 + DAY_S:
            inside.append(self._s0)
        edges = np.unique(np.concatenate([day0 + step * np.arange(per_day + 1, dtype=np.float64), inside]))
        lo, hi = edges[:-1], edges[1:]
        index = np.minimum(((lo - day0) // step).astype(np.int64), per_day - 1)
        customers = sum((c.true_steps_m3(d) for c in self.customers), np.zeros(per_day)) / step
        leak = self.leakage_m3h * PRESSURE_FACTOR[(index * step) // HOUR_S] / HOUR_S
        flow = customers[index] + leak
        for b in self.bursts:
            end = math.inf if b.end is None else b.end.timestamp()
            flow = flow + b.rate_lph / 1000.0 / HOUR_S * ((b.start.timestamp() <= lo) & (lo < end))
        flow = np.where(lo >= self._s0, flow, 0.0)
        backward = np.concatenate([[0.0], np.cumsum(np.maximum(-flow, 0.0) * (hi - lo))])
        return edges, flow, backward

    def _reverse(self, s: float) -> float:
        """Backward volume from installation to second ``s``: the reverse totaliser, unquantized."""
        with self._lock:
            self._forget_changes()
            today = math.floor(s / DAY_S)
            total = 0.0
            for d in self._reverse_days(s):
                if d < today:
                    if d not in self._reverse_by_day:
                        self._reverse_by_day[d] = float(self._pieces(d)[2][-1])
                    total += self._reverse_by_day[d]
                else:
                    edges, flow, backward = self._pieces(d)
                    i = min(int(np.searchsorted(edges, s, side="right")) - 1, len(flow) - 1)
                    total += float(backward[i]) + max(-float(flow[i]), 0.0) * (s - float(edges[i]))
            return total

    def _exact(self, at: datetime) -> float:
        s = at.timestamp()
        customers = sum(c.true_volume_m3(at) - c.true_volume_m3(self.installed) for c in self.customers)
        leak = leakage_m3(self.leakage_m3h, s) - leakage_m3(self.leakage_m3h, self._s0)
        burst = sum(b.volume_m3(self._s0, s) for b in self.bursts)
        return self.initial_m3 + customers + leak + burst

    def volume_m3(self, at: datetime) -> float:
        return self._quantize(self._exact(at))

    def _quantize(self, volume: float) -> float:
        counts = math.floor(volume * self._inv + _EPS)
        return (counts % round(self.modulus_m3 * self._inv)) / self._inv

    def flow_m3h(self, at: datetime) -> float:
        s = at.timestamp()
        hour = int((s % DAY_S) // HOUR_S)
        leak = self.leakage_m3h * float(PRESSURE_FACTOR[hour])
        bursts = sum(b.rate_lph / 1000.0 for b in self.bursts if b.volume_m3(s, s + 1e-3) > 0)
        return sum(c.true_flow_m3h(at) for c in self.customers) + leak + bursts

    def read(self, at: datetime) -> MeterReading:
        net = self._exact(at)
        backward = self._reverse(at.timestamp())
        flow = self.flow_m3h(at)
        return MeterReading(
            meter_id=self.meter_id,
            ts=at,
            meter_time=at,
            volume_m3=self._quantize(net),
            flow_m3h=flow,
            reverse_volume_m3=self._quantize(backward),
            forward_volume_m3=self._quantize(net + backward),
            alarms=frozenset({"reverse_flow"} if flow < 0 else ()),
            true_flow_m3h=flow,
        )

    def ground_truth(self, until: datetime) -> list[GroundTruthEvent]:
        return [b.ground_truth(self.dma, until) for b in self.bursts if b.start <= until]
