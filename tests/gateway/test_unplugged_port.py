"""A USB converter or receiver stick unplugged under an open port: pyserial calls termios directly
(reset_input_buffer, the timeout setter) and raises termios.error, which is no OSError. It escaped
the poll's failure handling: the task died with "Task exception was never retrieved", no failed
attempt was counted, no warning logged, and the meter never went offline."""

from __future__ import annotations

import asyncio
import termios

import pytest

from gateway.buses import attempt_once
from gateway.config import MBusBusConfig, MeterConfig
from gateway.mbus import MBusTransport
from gateway.transport import PollError
from gateway.wmbus import WMBusListener
from tests.gateway.test_wmbus import _radio


class UnpluggedPort:
    """What pyserial's port does once its tty has hung up."""

    @property
    def in_waiting(self) -> int:
        raise OSError(5, "Input/output error")  # pyserial's TIOCINQ ioctl

    def reset_input_buffer(self) -> None:
        raise termios.error(5, "Input/output error")

    def read(self, size: int) -> bytes:
        raise termios.error(5, "Input/output error")

    def close(self) -> None:
        pass


def test_a_wired_m_bus_poll_through_an_unplugged_converter_is_a_failed_attempt() -> None:
    meter = MeterConfig("FLAT-7", 7, "mbus")
    bus = MBusBusConfig("mbus-1", "/dev/ttyUSB1", (meter,))
    transport = MBusTransport(bus)
    transport.line.open = UnpluggedPort  # type: ignore[method-assign, assignment]
    with pytest.raises(PollError, match="Input/output error"):
        asyncio.run(attempt_once(transport, bus, meter))


def test_a_receiver_unplugged_while_read_is_reopened_not_the_listener_ended() -> None:
    opened = 0

    def open_unplugged() -> UnpluggedPort:
        nonlocal opened
        opened += 1
        return UnpluggedPort()

    async def scenario() -> None:
        listener = WMBusListener(
            _radio("/dev/null"),
            on_reading=lambda reading: asyncio.sleep(0),
            on_heard=lambda meter, ok, error=None: None,
        )
        listener._open = open_unplugged  # type: ignore[method-assign, assignment]
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        while opened < 2:  # reopened after its wait (0.25-0.5 s): the listener lives on
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(asyncio.wait_for(scenario(), 30))
