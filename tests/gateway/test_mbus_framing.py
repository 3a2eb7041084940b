"""A wired M-Bus port that refuses the configured framing (``tcsetattr`` fails: Linux's ptys drop
the parity bit and glibc then refuses parity E, as the rig's ``mbus-1`` line does) is a failed
attempt that says so, in a polled bus's attempt and in ``aquami gateway scan`` alike, as a Modbus
RTU port's is (tests/gateway/test_modbus_rtu_framing.py), and the port is let go.

Before, ``termios.error`` is no ``SerialException``: the gateway's warning was the bare ``(22,
'Invalid argument')``, and ``gateway scan --bus mbus-1`` on the rig's line ended in a 60-line
traceback. Where the kernel's ptys take parity E (Linux), the same bus reads and the scan finds the
meter.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import termios
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.buses import attempt_once
from gateway.config import MBusBusConfig, MeterConfig
from gateway.mbus import MBusLine, MBusTransport
from gateway.transport import LineUnusable, PollError
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import bus_config_text, port_free
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

AQUAMI = str(Path(sys.executable).with_name("aquami"))
REFUSED = "the port refuses the configured framing 2400 8E1 (Invalid argument)"


@pytest.fixture
def line() -> Iterator[SerialLine]:
    slaves = MBusSlaves([MBusSlave(1, "26000001", 12.5)])
    running = SerialLine(slaves, LineSettings(baudrate=2400, parity="E")).start()
    yield running
    running.stop()


def test_a_port_that_refuses_the_framing_says_so_and_is_let_go(line: SerialLine) -> None:
    meter = MeterConfig("MB000001", 1, "mbus")
    bus = MBusBusConfig("mbus-1", line.port, (meter,), baudrate=2400, parity="E")
    transport = MBusTransport(bus, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    async def scenario() -> None:
        for _ in range(2):  # the second attempt as the first: not refused as "in use" by this program
            if pty_accepts_parity():
                assert (await attempt_once(transport, bus, meter)).meter_id == meter.meter_id
                await transport.close()
            else:
                with pytest.raises(PollError) as failed:
                    await attempt_once(transport, bus, meter)
                assert str(failed.value) == f"mbus-1: cannot open {line.port}: {REFUSED}"
            assert port_free(line.port)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_scan_of_a_port_that_refuses_the_framing_is_one_line(tmp_path: Path, line: SerialLine) -> None:
    bus = {"name": "mbus-1", "protocol": "mbus", "device": line.port, "baudrate": 2400, "parity": "E"}
    config = tmp_path / "gw.toml"
    config.write_text(bus_config_text("mqtt://127.0.0.1:1", tmp_path / "s.sqlite", bus, [], gateway_id="g"))
    done = subprocess.run(
        [AQUAMI, "gateway", "scan", str(config), "--bus", "mbus-1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )
    if pty_accepts_parity():
        assert done.returncode == 0 and "26000001" in done.stdout, done.stderr
    else:
        assert done.returncode == 1, (done.stdout, done.stderr)
        refused = f"mbus-1: cannot open {line.port}: {REFUSED}"
        assert done.stderr.splitlines() == [f"error: mbus-1: search stopped, 0 found by then: {refused}"]
        assert done.stdout == ""


class ReadBackWithoutParity:
    """An open port whose every timeout change fails in ``tcsetattr``, as pyserial's does on a pty that
    took parity E at open but reads it back as none (so each timeout set re-applies the settings)."""

    def __init__(self) -> None:
        self.closed = False

    @property
    def timeout(self) -> float:
        return 0.0

    @timeout.setter
    def timeout(self, value: float) -> None:
        raise termios.error(errno.EINVAL, "Invalid argument")

    @property
    def in_waiting(self) -> int:
        return 0  # nothing came since the last exchange: the request is due at once

    def reset_input_buffer(self) -> None: ...

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None: ...

    def close(self) -> None:
        self.closed = True


def test_a_port_that_refuses_the_framing_mid_exchange_says_so_and_is_let_go() -> None:
    """Before, the ``termios.error`` left the exchange bare: a scan's traceback, a poll's ``(22,
    'Invalid argument')``, and the port stayed open for the next attempt to fail alike."""
    line = MBusLine(MBusBusConfig("mbus-1", "/dev/pts/1", (), baudrate=2400, parity="E"))
    port = ReadBackWithoutParity()
    line.port = port  # type: ignore[assignment]
    with pytest.raises(LineUnusable) as failed:
        line.exchange(bytes([0x10, 0x40, 0x01, 0x41, 0x16]))
    assert str(failed.value) == f"mbus-1: cannot open /dev/pts/1: {REFUSED}"
    assert port.closed and line.port is None
