"""A DMA of live meters for the wire simulators: customers, their inlet, faults drawn from a seed.

The fleet generator (:mod:`simulators.fleet`) makes data sets as arrays; this makes the same kind of
district as live objects the Modbus/M-Bus simulators answer from, so an end-to-end run (simulator →
gateway → collector → detection) can be scored against :meth:`LiveDMA.ground_truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from simulators.consumption import mean_daily_m3
from simulators.events import Burst, Fault, Leak, ReverseFlow, Stuck, Tamper
from simulators.ground_truth import GroundTruthEvent
from simulators.inlet_model import InletMeterModel, MainBurst
from simulators.meter_model import MeterModel


@dataclass
class LiveDMA:
    name: str
    customers: list[MeterModel]
    inlet: InletMeterModel

    def ground_truth(self, until: datetime) -> list[GroundTruthEvent]:
        events = [e for m in self.customers for e in m.ground_truth(until)] + self.inlet.ground_truth(until)
        return sorted(events, key=lambda e: (e.start, e.meter_id or "", e.event))


def build_dma(
    name: str,
    meters: int,
    installed: datetime,
    *,
    seed: int = 0,
    first_meter: int = 1,
    fault_days: float = 7.0,
    leaks: int = 1,
    bursts: int = 0,
    reverse_flows: int = 0,
    tampers: int = 0,
    stuck: int = 0,
    main_bursts: int = 0,
    leakage_share: float = 0.15,
) -> LiveDMA:
    """``meters`` customer meters ``M{first_meter:06d}``… and ``{name}-INLET``; each fault on its own
    meter, starting within ``fault_days`` of installation, sized like the fleet generator's."""
    if leaks + bursts + reverse_flows + tampers + stuck > meters:
        raise ValueError("more faulty meters asked for than meters")
    rng = np.random.default_rng([seed, 3])
    customers = [
        MeterModel(
            f"M{first_meter + i:06d}",
            installed=installed,
            seed=seed,
            initial_m3=round(float(rng.uniform(10.0, 2000.0)), 3),
            dma=name,
        )
        for i in range(meters)
    ]
    order = rng.permutation(meters).tolist()

    def start() -> datetime:
        return installed + timedelta(seconds=int(rng.integers(3600, max(int(fault_days * 86400), 3601))))

    def log_uniform(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    plan: list[Fault] = []
    for _ in range(leaks):
        plan.append(Leak(start=start(), rate_lph=log_uniform(2.0, 200.0)))
    for _ in range(bursts):
        s = start()
        plan.append(Burst(start=s, end=s + timedelta(hours=float(rng.uniform(1, 48))), rate_lph=log_uniform(300, 3000)))
    for _ in range(reverse_flows):
        s = start()
        plan.append(
            ReverseFlow(start=s, end=s + timedelta(hours=float(rng.uniform(1, 24))), rate_lph=log_uniform(10, 200))
        )
    for _ in range(tampers):
        s = start()
        plan.append(Tamper(start=s, end=s + timedelta(days=float(rng.uniform(1, 10))), registered_share=0.1))
    for _ in range(stuck):
        plan.append(Stuck(start=start()))
    for fault, i in zip(plan, order, strict=False):
        customers[i].inject(fault)

    demand_m3h = sum(float(mean_daily_m3(m.customers)[0]) for m in customers) / 24.0
    inlet = InletMeterModel(
        f"{name}-INLET",
        name,
        customers,
        installed=installed,
        leakage_m3h=leakage_share * demand_m3h,
        initial_m3=round(float(rng.uniform(1e4, 1e6)), 3),
    )
    for _ in range(main_bursts):
        s = start()
        share = log_uniform(0.03, 0.3)
        inlet.inject(
            MainBurst(start=s, end=s + timedelta(hours=float(rng.uniform(6, 72))), rate_lph=share * demand_m3h * 1000)
        )
    return LiveDMA(name, customers, inlet)
