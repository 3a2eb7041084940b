"""How many threads a Modbus meter's polls take for their serial number check, per 100 polls.

A Modbus poll checks its meter's serial number in a thread (gateway.modbus_transport: the check may
read or write the spool, which must not block the event loop). A meter known in this run by the
serial number it answers with needs neither: its polls now take the answer from memory
(gateway.modbus_identity.taken_from_memory), the others are checked in a thread as before.

On the project's Modbus TCP simulator, with the gateway's transport and a spool: FLAT-5 configured
without a serial number (its first answer remembered) and FLAT-6 configured with its own, each
polled ``--polls`` times, then FLAT-5's meter exchanged for another and polled once more (refused).
The baseline, in the same run, is the transport with the check in a thread at every poll, as before.

    .venv/bin/python -m benchmarks.modbus_identity_thread_hops [--polls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gateway.modbus_transport
from firmware_protocols.modbus import MeterProfile, load_profile
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.meter_identity import MeterIdentities
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.spool import Spool
from gateway.transport import PollError
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SmartMeter, SteadyFlow

NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)


class EveryPollInAThread(ModbusTcpTransport):
    """The baseline: the transport as it was, its check in a thread at every poll."""

    async def _check_serial_number(
        self, meter: MeterConfig, fields: Mapping[str, Any], at: datetime, profile: MeterProfile
    ) -> None:
        check = gateway.modbus_transport.check_serial_number
        await asyncio.to_thread(check, self.identities, meter, fields, at, self.config, profile)


class Hops:
    """gateway.modbus_transport's check_serial_number, counting the calls run off the event loop's thread."""

    def __init__(self) -> None:
        self.check = gateway.modbus_transport.check_serial_number
        self.loop_thread = threading.current_thread()
        self.count = 0

    def __call__(self, *args: Any) -> None:
        if threading.current_thread() is not self.loop_thread:
            self.count += 1
        self.check(*args)


def _meter(unit_id: int, serial_number: str) -> SmartMeter:
    flow = SteadyFlow(NOW - timedelta(days=1), initial_m3=100.0 * unit_id, rate_m3h=0.5)
    return SmartMeter(f"M{unit_id}", unit_id, load_profile("smart_water_meter"), flow, serial_number=serial_number)


async def _polls(kind: type[ModbusTcpTransport], polls: int, spool: Spool) -> tuple[int, int, int]:
    """(polls made, polls taken, polls refused) of FLAT-5 and FLAT-6, then FLAT-5 after its exchange."""
    five, six = _meter(5, "40000005"), _meter(6, "40000006")
    simulator = ModbusTcpSimulator([five, six], clock=lambda: NOW)
    await simulator.start()
    meters = (MeterConfig("FLAT-5", 5), MeterConfig("FLAT-6", 6, serial_number="40000006"))
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", simulator.port, meters, timeout_s=1.0, retries=0)
    transport = kind(bus, ProfileBook(), lambda: NOW, identities=MeterIdentities(spool))
    made = taken = refused = 0
    try:
        for _ in range(polls):
            for meter in meters:
                made += 1
                await transport.read(meter)
                taken += 1
        five.serial_number = "40000099"  # (unit 5 answers as another meter: exchanged)
        made += 1
        try:
            await transport.read(meters[0])
        except PollError:  # (a SerialNumberMismatch)
            refused += 1
    finally:
        await transport.close()
        await simulator.stop()
    return made, taken, refused


def measure(kind: type[ModbusTcpTransport], polls: int) -> tuple[int, int, int, int]:
    """(thread hops, polls made, taken, refused), on a spool of its own."""
    hops = Hops()
    gateway.modbus_transport.check_serial_number = hops  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as folder:
            spool = Spool(Path(folder) / "s.sqlite")
            try:
                made, taken, refused = asyncio.run(_polls(kind, polls, spool))
            finally:
                spool.close()
    finally:
        gateway.modbus_transport.check_serial_number = hops.check
    return hops.count, made, taken, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=100, help="polls of each of the two meters")
    args = parser.parse_args()
    print(f"Modbus TCP simulator, 2 meters polled {args.polls} times each, then one exchanged and polled once:")
    before = measure(EveryPollInAThread, args.polls)
    after = measure(ModbusTcpTransport, args.polls)
    for name, (hops, made, taken, refused) in (("before (every poll)", before), ("now", after)):
        print(
            f"  {name}: {hops} thread hops for {made} polls ({100 * hops / made:.1f} per 100 polls); "
            f"{taken} taken, {refused} refused"
        )
    print(f"  thread hops now / before: {after[0] / before[0]:.3f}")


if __name__ == "__main__":
    main()
