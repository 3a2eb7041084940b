"""Lines an hour in the gateway's log for a dead Modbus TCP bus of 3 meters polled every 5 s.

Time is scaled: the meters are polled every ``5 s / SCALE`` against a port where nothing listens
(each poll fails at once, connection refused), for ``1 h / SCALE``, with the scheduler's reminder
interval scaled alike; the scheduler's log lines are counted. One scaled hour stands for the first
hour of an outage, the second for any hour after it (the reminders' hour).

    .venv/bin/python -m benchmarks.dead_bus_log_lines
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from aquami.contracts.reads import Reading
from aquami.ports import free_port
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler

SCALE = 200.0
POLL_S, HOUR_S, METERS = 5.0, 3600.0, 3


class _Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


async def _hours(hours: int) -> list[int]:
    """The scheduler's log lines in each of ``hours`` scaled hours of a dead bus."""
    bus = ModbusTcpBusConfig(
        "tcp-1",
        "127.0.0.1",
        free_port(),
        tuple(MeterConfig(f"WM-{unit:04d}", unit) for unit in range(1, METERS + 1)),
        poll_interval_s=POLL_S / SCALE,
        timeout_s=0.2,
        retries=0,  # each poll one line before; retries change no line count
        jitter=0.0,
    )

    async def taken(reading: Reading) -> None:
        pass

    options: dict[str, Any] = {}
    if "remind_every_s" in inspect.signature(BusScheduler).parameters:
        options["remind_every_s"] = HOUR_S / SCALE
    scheduler = BusScheduler(bus, ModbusTcpTransport(bus, ProfileBook()), on_reading=taken, **options)
    counting = _Counting()
    logger = logging.getLogger("gateway.scheduler")
    logger.addHandler(counting)
    logger.setLevel(logging.INFO)
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    per_hour = []
    try:
        for _ in range(hours):
            before = counting.lines
            await asyncio.sleep(HOUR_S / SCALE)
            per_hour.append(counting.lines - before)
    finally:
        stop.set()
        await running
        await scheduler.close()
        logger.removeHandler(counting)
    return per_hour


def main() -> None:
    first, second = asyncio.run(_hours(2))
    print(f"dead Modbus TCP bus, {METERS} meters polled every {POLL_S:g} s (time scaled 1:{SCALE:g})")
    print(f"  log lines in the outage's first hour   {first:8,}")
    print(f"  log lines in each hour after           {second:8,}")


if __name__ == "__main__":
    main()
