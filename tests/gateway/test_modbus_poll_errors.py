"""A poll that fails with an exception no transport expects is a failed poll, counted and reported."""

from __future__ import annotations

import asyncio

from aquami.contracts.reads import Reading
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.scheduler import BusScheduler
from tests.gateway.helpers import StatelessTransport


class BrokenTransport(StatelessTransport):
    """A decoding bug: every read raises something other than a PollError."""

    async def read(self, meter: MeterConfig) -> Reading:
        raise ArithmeticError("decimal.InvalidOperation")


def test_an_unexpected_exception_in_a_read_is_a_failed_poll_with_its_error() -> None:
    """litres_per_pulse = "1 L" on a meter's own register raised InvalidOperation at each poll: the
    poll's task died unretrieved, nothing published, the health showed attempts 0 and no last_error."""
    meter = MeterConfig("WM-1", 1)
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", 1, (meter,), retries=1, retry_backoff_s=0.0)
    polls: list[tuple[str, Reading | None, str | None]] = []
    attempts: list[bool] = []
    scheduler = BusScheduler(
        bus,
        BrokenTransport(),
        on_reading=lambda reading: asyncio.sleep(0),
        on_poll=lambda m, reading, error: polls.append((m.meter_id, reading, error)),
        on_attempt=attempts.append,
    )
    reading, why = asyncio.run(scheduler.read_now("WM-1"))
    assert reading is None and why is not None and "unexpected ArithmeticError" in why
    assert attempts == [False, False]
    [(meter_id, reading, error)] = polls
    assert meter_id == "WM-1" and reading is None
    assert error is not None and "unexpected ArithmeticError" in error
