"""A poll that fails with an exception no transport expects is a failed poll, counted and reported."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from aquami.contracts.reads import Reading
from gateway.buses import attempt_once
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.scheduler import BusScheduler
from gateway.transport import NoAnswer
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
    reading, why, _ = asyncio.run(scheduler.read_now("WM-1"))
    assert reading is None and why is not None and "unexpected ArithmeticError" in why
    assert attempts == [False, False]
    [(meter_id, reading, error)] = polls
    assert meter_id == "WM-1" and reading is None
    assert error is not None and "unexpected ArithmeticError" in error


class AnsweringCancelWithNoAnswer(StatelessTransport):
    """pymodbus 3.16, cancelled while it waits for a response (the gateway stopping mid-poll): the
    read ends with its ModbusIOException, which gateway.modbus_read turns into NoAnswer."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()

    async def read(self, meter: MeterConfig) -> Reading:
        self.waiting.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise NoAnswer(f"{meter.meter_id}: no answer from unit {meter.unit_id}") from None
        raise AssertionError("not cancelled")


def test_a_poll_cancelled_as_the_gateway_stops_leaves_no_task_exception_never_retrieved() -> None:
    """The attempt's time limit ran the read in a task of its own (asyncio.wait_for): cancelled by a
    stop while pymodbus waited, the read ended with NoAnswer, which nobody retrieved, and asyncio
    logged "Task exception was never retrieved" with pymodbus's traceback in the gateway's log."""
    meter = MeterConfig("WM-1", 1)
    bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", 1, (meter,), timeout_s=10.0, retries=0)
    transport = AnsweringCancelWithNoAnswer()
    unretrieved: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unretrieved.append(context))
        poll = asyncio.create_task(attempt_once(transport, bus, meter))
        await transport.waiting.wait()
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
        assert poll.cancelled()  # the stop still stops the poll
        gc.collect()  # a task's "never retrieved" is said when it is collected
        await asyncio.sleep(0)

    asyncio.run(scenario())
    gc.collect()
    assert [c.get("message") for c in unretrieved] == []
