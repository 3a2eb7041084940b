"""Warnings about a dead polled meter, and about one answering late, whose gateway file is reloaded
every 10 minutes.

A Modbus meter polled every minute does not answer for two hours; an operator's automation reloads
the file every 10 minutes, each reload making the bus's scheduler anew, as the gateway does. Then it
answers again. Counted on the episodes' clock (no waiting): its warnings (the first of an episode,
and the hourly reminders), and the line that says it answers again. Measured twice in the same run:
with the gateway's memory of the episodes kept across reloads (now), and with a fresh one at each
reload (before 2026-12-07, when each scheduler had its own).

Then a Modbus meter that answers after the bus's timeout at every poll for two hours, the file
reloaded as often, each reload making the bus's transport, and with it its late answers' count and
warnings (gateway.late_answers), anew: its warnings, with the gateway's memory of the late answers'
episodes kept across reloads (now, gateway.late_episodes), and with a fresh one at each reload
(before, when each transport had its own).

    .venv/bin/python -m benchmarks.polled_reload_log_lines
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aquami.contracts.reads import Reading
from aquami.counted import counted
from benchmarks.log_kinds import LinesSaid
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.late_answers import LateAnswers
from gateway.late_episodes import LateEpisodes
from gateway.poll_episodes import PolledEpisodes
from gateway.scheduler import BusScheduler
from gateway.transport import NoAnswer
from tests.gateway.helpers import StatelessTransport

HOURS, POLL_EVERY_S, RELOAD_EVERY_S = 2, 60, 600


class _Meter(StatelessTransport):
    """WM-0001, silent until ``answering``."""

    answering = False

    async def read(self, meter: MeterConfig) -> Reading:
        if not self.answering:
            raise NoAnswer(f"{meter.meter_id}: no answer from unit {meter.unit_id}")
        return Reading(meter.meter_id, datetime.now(UTC), 1.0, protocol="modbus-tcp", bus="tcp-1", address=1)


def _run(kept: bool) -> tuple[int, int, str, int]:
    """Warnings, reminders, the "answers again" line (or none) and reloads, the memory ``kept``
    across reloads or made anew at each."""
    now = [0.0]
    memory = PolledEpisodes(monotonic=lambda: now[0])
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", 502, (MeterConfig("WM-0001", 1),), retries=0)
    meter = _Meter()

    def reload() -> BusScheduler:
        nonlocal memory
        if not kept:
            memory = PolledEpisodes(monotonic=lambda: now[0])
        memory.configured([bus])
        return BusScheduler(bus, meter, on_reading=lambda r: asyncio.sleep(0), failing=memory.of_bus("tcp-1"))

    handler = LinesSaid()
    logger = logging.getLogger("gateway.scheduler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    scheduler, reloads = reload(), 0
    try:
        for second in range(0, HOURS * 3600 + 3 * POLL_EVERY_S, POLL_EVERY_S):
            now[0] = float(second)
            if second and second % RELOAD_EVERY_S == 0 and second < HOURS * 3600:
                scheduler, reloads = reload(), reloads + 1
            meter.answering = second >= HOURS * 3600
            asyncio.run(scheduler.poll(bus.meters[0]))
    finally:
        logger.removeHandler(handler)
    warnings = [line for level, line in handler.lines if level == logging.WARNING]
    firsts = sum("said again every" in line for line in warnings)
    back = [line for level, line in handler.lines if level == logging.INFO]
    return firsts, len(warnings) - firsts, back[0] if back else "none", reloads


def _late_run(kept: bool) -> tuple[int, int, int]:
    """Warnings, late answers counted and reloads, for a meter answering late at every poll, the
    late answers' episodes ``kept`` across reloads or made anew at each."""
    now = [0.0]
    memory = LateEpisodes()
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", 502, (MeterConfig("WM-0005", 5),), timeout_s=0.5, retries=0)
    counts: list[int | None] = []  # the health status's late_answers, told by each transport

    def reload() -> LateAnswers:
        nonlocal memory
        if not kept:
            memory = LateEpisodes()
        memory.configured([bus])
        return LateAnswers(bus, counts.append, monotonic=lambda: now[0], episodes=memory.of_bus("tcp-1"))

    handler = LinesSaid()
    logger = logging.getLogger("gateway.late_answers")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    late, reloads = reload(), 0
    try:
        for second in range(0, HOURS * 3600, POLL_EVERY_S):
            now[0] = float(second)
            if second and second % RELOAD_EVERY_S == 0:
                late, reloads = reload(), reloads + 1
            late.heard(5)  # its answer to this poll, after the timeout
    finally:
        logger.removeHandler(handler)
    return sum(level == logging.WARNING for level, _ in handler.lines), len(counts), reloads


def main() -> None:
    before, after = _run(kept=False), _run(kept=True)
    every = f"every {RELOAD_EVERY_S // 60} min"
    print(f"{HOURS} h dead, polled every {POLL_EVERY_S} s, file reloaded {after[3]} times ({every})")
    for name, (firsts, reminders, back, _) in (("before (anew at each reload)", before), ("now (kept)", after)):
        print(f"{name}: {counted(firsts, 'warning')} + {counted(reminders, 'reminder')}; then: {back}")
    late_before, late_after = _late_run(kept=False), _late_run(kept=True)
    print(f"{HOURS} h answering late, polled every {POLL_EVERY_S} s, file reloaded {late_after[2]} times ({every})")
    for name, (warnings, heard, _) in (("before (anew at each reload)", late_before), ("now (kept)", late_after)):
        print(f"{name}: {counted(warnings, 'warning')}, {counted(heard, 'late answer')} counted")


if __name__ == "__main__":
    main()
