"""What a wired M-Bus meter exchanged at its primary address costs the bus at every poll interval.

On the project's M-Bus simulator (a pty at 2400 baud, 8E1 where the pty takes parity), two meters on
primary addresses with the gateway's default ``retries = 2`` and ``retry_backoff_s = 0.2``: FLAT-5,
configured with identification 11111111, whose meter was exchanged for 33333333 (each poll refused,
:class:`gateway.mbus_identity.IdentificationMismatch`), and FLAT-6, its own meter. Each interval polls
both once; counted per interval: the requests each meter's address heard (SND_NKE, REQ_UD2), the
seconds its transactions held the bus (the other meters wait for them), and the seconds its poll
took (its backoff between attempts included, the bus free for the others meanwhile).

No baseline runs beside it: run it on the code before a change for the figure to compare with.

    .venv/bin/python -m benchmarks.mbus_swapped_meter_bus_time [--intervals 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Literal

from aquami.contracts.reads import Reading
from gateway.config import MBusBusConfig, MeterConfig
from gateway.mbus import MBusTransport
from gateway.scheduler import BusScheduler
from simulators.mbus_bus import MBusSimulator, mbus_line
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.serial_line import pty_accepts_parity

BAUD = 2400
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)


def _water_meter(identification: str, primary: int, initial_m3: float) -> MBusWaterMeter:
    installed = datetime(2026, 5, 20, tzinfo=UTC)
    model = MeterModel(f"MB{identification}", installed=installed, seed=int(identification[-1]), initial_m3=initial_m3)
    model.read(NOW)
    return MBusWaterMeter(model, primary, identification)


async def _drop(reading: Reading) -> None:
    """The readings are not what is measured here."""


class _Timed(MBusTransport):
    """The transport, adding up the seconds each meter's transactions hold the line."""

    def __init__(self, bus: MBusBusConfig) -> None:
        super().__init__(bus)
        self.busy_s: dict[str, float] = {m.meter_id: 0.0 for m in bus.meters}

    async def read(self, meter: MeterConfig) -> Reading:
        started = time.perf_counter()
        try:
            return await super().read(meter)
        finally:
            self.busy_s[meter.meter_id] += time.perf_counter() - started


async def _intervals(
    bus: MBusBusConfig, sim: MBusSimulator, intervals: int
) -> tuple[Counter[str], dict[str, float], dict[str, float]]:
    """Each meter polled once an interval: the requests per meter, the seconds its transactions held
    the bus, and the seconds its polls took."""
    transport = _Timed(bus)
    scheduler = BusScheduler(bus, transport, on_reading=_drop)
    seconds: dict[str, float] = {m.meter_id: 0.0 for m in bus.meters}
    try:
        for _ in range(intervals):
            for meter in bus.meters:
                started = time.perf_counter()
                await scheduler.read_now(meter.meter_id)
                seconds[meter.meter_id] += time.perf_counter() - started
    finally:
        await transport.close()
    names = {m.unit_id: m.meter_id for m in bus.meters}
    requests: Counter[str] = Counter()
    for (function, address), n in sim.bus.requests.items():
        requests[f"{names.get(address, address)} {function}"] += n
    return requests, transport.busy_s, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=5)
    args = parser.parse_args(argv)
    parity: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
    with MBusSimulator(
        [_water_meter("11111111", 5, 1234.0), _water_meter("22222222", 6, 300.0)], mbus_line(BAUD), clock=lambda: NOW
    ) as sim:
        sim.exchange("11111111", _water_meter("33333333", 0, 0.0))
        meters = (MeterConfig("FLAT-5", 5, "mbus", identification="11111111"), MeterConfig("FLAT-6", 6, "mbus"))
        bus = MBusBusConfig("mbus-1", sim.port, meters, baudrate=BAUD, parity=parity)
        requests, busy, seconds = asyncio.run(_intervals(bus, sim, args.intervals))
    n = args.intervals
    print(f"M-Bus at {BAUD} baud, retries {bus.retries}, {n} poll intervals; per interval:")
    for meter in meters:
        said = ", ".join(
            f"{k.split()[1]} {v / n:g}" for k, v in sorted(requests.items()) if k.startswith(meter.meter_id)
        )
        print(
            f"  {meter.meter_id}: requests {said}; the bus held {busy[meter.meter_id] / n:.3f} s, "
            f"its poll took {seconds[meter.meter_id] / n:.3f} s"
        )
    print(f"  the bus, both polls: {sum(requests.values()) / n:g} requests, held {sum(busy.values()) / n:.3f} s")


if __name__ == "__main__":
    main()
