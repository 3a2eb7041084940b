"""How many Modbus polls store another meter's register once meters are swapped or exchanged.

On the project's Modbus RTU simulator (a pty at 19200 baud), the gateway's scheduler and transport
with their defaults otherwise (``retries = 2``): FLAT-5 (1234 m3, configured with its serial number)
and FLAT-6 (300 m3, its first answer's serial number remembered) polled once each, then

- *swap*: a technician gives the two meters each other's unit id;
- *exchange*: FLAT-5's meter is replaced by a new one (from 0 m3) set to unit id 5;

and each meter polled ``--polls`` times more. Counted: the polls after the change that stored a
register that was not the meter's own, and the requests the meters' units heard.

No baseline runs beside it: run it on the code before a change for the figure to compare with
(before the serial number check: every poll after the change stored the other meter's register).

    .venv/bin/python -m benchmarks.modbus_swapped_units_readings [--polls 4]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from aquami.contracts.reads import Reading
from firmware_protocols.modbus import load_profile
from gateway.config import MeterConfig, ModbusRtuBusConfig
from gateway.modbus_transport import ModbusRtuTransport
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.smart_meter import SmartMeter, SteadyFlow

NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"


class CountedMeter(SmartMeter):
    """A simulated meter counting the requests it answered."""

    served: int = 0

    def registers_at(self, at: datetime) -> list[int]:
        self.served += 1
        return super().registers_at(at)


def _meter(meter_id: str, unit_id: int, initial_m3: float, serial_number: str) -> CountedMeter:
    flow = SteadyFlow(NOW - timedelta(days=1), initial_m3=initial_m3, rate_m3h=0.5)
    return CountedMeter(meter_id, unit_id, load_profile("smart_water_meter"), flow, serial_number=serial_number)


async def _polls(bus: ModbusRtuBusConfig, change: Callable[[], object], polls: int) -> list[Reading]:
    """Each meter polled once, ``change`` made, each meter polled ``polls`` times: what was stored after it."""
    stored: list[Reading] = []

    async def spool(reading: Reading) -> None:
        stored.append(reading)

    transport = ModbusRtuTransport(bus, ProfileBook(), lambda: NOW)
    scheduler = BusScheduler(bus, transport, on_reading=spool)
    try:
        for meter in bus.meters:
            await scheduler.read_now(meter.meter_id)
        before = len(stored)
        change()
        for _ in range(polls):
            for meter in bus.meters:
                await scheduler.read_now(meter.meter_id)
        return stored[before:]
    finally:
        await transport.close()


def measure(case: Literal["swap", "exchange"], polls: int) -> tuple[int, int, int]:
    """(polls after the change that stored another meter's register, polls after it, requests heard after it)."""
    five, six = _meter("FLAT-5", 5, 1234.0, "40000005"), _meter("FLAT-6", 6, 300.0, "40000006")
    new = _meter("NEW", 5, 0.0, "40000099")
    own = {"FLAT-5": five.model.volume_m3(NOW), "FLAT-6": six.model.volume_m3(NOW)}
    with ModbusRtuSimulator([five, six], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        bus = ModbusRtuBusConfig(
            "rtu-1",
            sim.port,
            (MeterConfig("FLAT-5", 5, serial_number="40000005"), MeterConfig("FLAT-6", 6)),
            baudrate=19200,
            parity=PARITY,
            timeout_s=0.5,
            retries=2,
            retry_backoff_s=0.05,
        )

        def change() -> None:
            five.served = six.served = 0
            if case == "swap":
                sim.slaves.swap_unit_ids(5, 6)
            else:
                sim.slaves.exchange(5, new)

        stored = asyncio.run(_polls(bus, change, polls))
    wrong = sum(1 for r in stored if abs(r.volume_m3 - own[r.meter_id]) > 1.0)
    return wrong, polls * len(bus.meters), five.served + six.served + new.served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=4, help="polls of each meter after the change")
    args = parser.parse_args()
    print(f"Modbus RTU at 19200 baud, retries 2, {args.polls} polls of each meter after the change:")
    cases: tuple[Literal["swap", "exchange"], ...] = ("swap", "exchange")
    for case in cases:
        wrong, polls, requests = measure(case, args.polls)
        print(f"  {case}: {wrong} of {polls} polls stored another meter's register; {requests} requests heard")


if __name__ == "__main__":
    main()
