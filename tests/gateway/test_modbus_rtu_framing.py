"""A Modbus RTU port that refuses the configured framing (``tcsetattr`` fails: Linux's ptys drop
the parity bit and glibc then refuses parity E) is a :class:`LineUnusable` that says so, and the
port is let go.

Before, pymodbus 3.16's ``SerialTransport.__init__`` raised a bare ``termios.error`` (22, 'Invalid
argument') with the port left open and locked by the gateway itself: the failed attempt said
``(22, 'Invalid argument')``, and every later one ``cannot open /dev/…: in use by another program``.
Where the kernel's ptys take parity E (Linux), the same bus reads, and is let go when closed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.buses import attempt_once
from gateway.config import MeterConfig, ModbusRtuBusConfig
from gateway.modbus_transport import ModbusRtuTransport
from gateway.profiles import ProfileBook
from gateway.transport import LineUnusable
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import bus_config_text, meters, port_free

AQUAMI = str(Path(sys.executable).with_name("aquami"))
REFUSED = "the port refuses the configured framing 9600 8E1 (Invalid argument)"


@pytest.fixture
def line() -> Iterator[SerialLine]:
    simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E")).start()
    yield simulator.line
    simulator.stop()


def test_a_port_that_refuses_the_framing_says_so_and_is_let_go(line: SerialLine) -> None:
    meter = MeterConfig("WM-0001", 1, "smart_water_meter")
    bus = ModbusRtuBusConfig("rtu-1", line.port, (meter,), parity="E", timeout_s=1.0)
    transport = ModbusRtuTransport(bus, ProfileBook())

    async def scenario() -> None:
        for _ in range(2):  # the second attempt as the first: not refused as "in use" by this program
            if pty_accepts_parity():
                assert (await attempt_once(transport, bus, meter)).meter_id == meter.meter_id
                await transport.close()
            else:
                with pytest.raises(LineUnusable) as failed:
                    await attempt_once(transport, bus, meter)
                assert str(failed.value) == f"rtu-1: cannot open {line.port}: {REFUSED}"
            assert port_free(line.port)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_scan_of_a_port_that_refuses_the_framing_is_one_line(tmp_path: Path, line: SerialLine) -> None:
    bus = {"name": "rtu-1", "protocol": "modbus-rtu", "device": line.port, "parity": "E", "timeout_s": 0.5}
    config = tmp_path / "gw.toml"
    config.write_text(bus_config_text("mqtt://127.0.0.1:1", tmp_path / "s.sqlite", bus, [], gateway_id="g"))
    done = subprocess.run(
        [AQUAMI, "gateway", "scan", str(config), "--bus", "rtu-1", "--first", "1", "--last", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    if pty_accepts_parity():
        assert done.returncode == 0 and "unit_id = 1\n" in done.stdout, done.stderr
    else:
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert done.stderr.splitlines() == [f"error: rtu-1: cannot open {line.port}: {REFUSED}"]
        assert done.stdout == ""
