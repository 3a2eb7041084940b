"""One program to a serial port: ``aquami gateway scan`` beside a running ``aquami gateway run`` on the
same bus is refused in one line naming the port, and a gateway whose port another program holds
counts a failed attempt (or, for a wM-Bus receiver, tries again later), as for a port that will not
open. Before, an M-Bus line and a wM-Bus receiver were opened without a lock: a scan beside a running
gateway interleaved its frames with the gateway's on one line, and both read garbage. A Modbus RTU
line was locked (pymodbus 3.16 opens it with pyserial's ``exclusive=True``), but its refusal said only
"cannot open /dev/…", not why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import serial

from aquami.contracts.reads import Reading
from gateway.buses import attempt_once
from gateway.config import MBusBusConfig, MeterConfig, ModbusRtuBusConfig
from gateway.mbus import MBusTransport
from gateway.modbus_transport import ModbusRtuTransport
from gateway.profiles import ProfileBook
from gateway.serial_port import IN_USE
from gateway.transport import PollError, Transport
from gateway.wmbus import WMBusListener
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import bus_config_text, meters
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves
from tests.gateway.test_mbus import PARITY, WIDE_ANSWER_S, mbus_bus
from tests.gateway.test_wmbus import _radio
from tests.services import free_port

AQUAMI = str(Path(sys.executable).with_name("aquami"))
SETTINGS = LineSettings(baudrate=9600, parity="E")
FRAMING_PARITY: Literal["N", "E", "O"] = "E" if pty_accepts_parity() else "N"  # as PARITY, typed


def _answered(line: SerialLine) -> bool:
    return any(t.reply for t in line.transactions)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, what
        time.sleep(0.05)


def _held(port: str) -> serial.Serial:
    """The port opened as another program opens it (a scan, a gateway): with its lock."""
    return serial.Serial(port, timeout=0, exclusive=True)


def _refused_to_another(port: str) -> bool:
    try:
        _held(port).close()
    except serial.SerialException:
        return True
    return False


@pytest.fixture
def mbus_line() -> Iterator[SerialLine]:
    line = SerialLine(MBusSlaves([MBusSlave(1, "11110001", 123.456)]), SETTINGS).start()
    yield line
    line.stop()


@pytest.fixture
def rtu_line() -> Iterator[SerialLine]:
    simulator = ModbusRtuSimulator(meters(1), SETTINGS).start()
    yield simulator.line
    simulator.stop()


def _bus(protocol: str, port: str) -> dict[str, Any]:
    if protocol == "mbus":
        return {**mbus_bus("mbus-1", port, WIDE_ANSWER_S), "poll_interval_s": 0.5, "timeout_s": 3.0}
    return {
        "name": "rtu-1",
        "protocol": "modbus-rtu",
        "device": port,
        "baudrate": 9600,
        "parity": PARITY,
        "timeout_s": 2.0,
        "poll_interval_s": 0.5,
    }


@pytest.mark.parametrize("protocol", ["mbus", "modbus-rtu"])
def test_a_scan_beside_a_running_gateway_is_refused_naming_the_port(
    tmp_path: Path, protocol: str, request: pytest.FixtureRequest
) -> None:
    line: SerialLine = request.getfixturevalue("mbus_line" if protocol == "mbus" else "rtu_line")
    bus = _bus(protocol, line.port)
    meter = {"meter_id": "HOUSE-1", "address": 1} if protocol == "mbus" else {"meter_id": "WM-0001", "unit_id": 1}
    config = tmp_path / "gw.toml"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none there: the readings wait in the spool
    config.write_text(bus_config_text(broker, tmp_path / "s.sqlite", bus, [meter], gateway_id="gw-lock"))
    scan = [AQUAMI, "gateway", "scan", str(config), "--bus", bus["name"], "--first", "1", "--last", "1"]
    with (tmp_path / "gateway.log").open("w") as log:
        gateway = subprocess.Popen([AQUAMI, "gateway", "run", str(config)], stdout=log, stderr=log)
        try:
            _wait(lambda: _answered(line), 30, "the gateway polled its meter")  # its port is open, and stays so
            refused = subprocess.run(scan, capture_output=True, text=True, timeout=60)
            assert gateway.poll() is None  # it polls on
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert refused.stdout == ""
    said = f"{bus['name']}: cannot open {line.port}: {IN_USE}"
    if protocol == "mbus":  # a secondary-address search: stopped, as for a device that will not open
        said = f"{bus['name']}: search stopped, 0 found by then: {said}"
    assert refused.stderr.splitlines() == [f"error: {said}"]
    assert gateway.returncode == 0, (tmp_path / "gateway.log").read_text()
    # the gateway gone, its lock went with it: the same scan finds the meter
    found = subprocess.run(scan, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert ('secondary_address = "11110001"' if protocol == "mbus" else "unit_id = 1") in found.stdout


def _transport(protocol: str, port: str) -> tuple[Transport, MBusBusConfig | ModbusRtuBusConfig, MeterConfig]:
    if protocol == "mbus":
        meter = MeterConfig("HOUSE-1", 1, "mbus")
        mbus = MBusBusConfig(
            "mbus-1", port, (meter,), baudrate=9600, parity=FRAMING_PARITY, answer_timeout_s=WIDE_ANSWER_S
        )
        return MBusTransport(mbus), mbus, meter
    meter = MeterConfig("WM-0001", 1, "smart_water_meter")
    rtu = ModbusRtuBusConfig("rtu-1", port, (meter,), parity=FRAMING_PARITY, timeout_s=2.0)
    return ModbusRtuTransport(rtu, ProfileBook()), rtu, meter


@pytest.mark.parametrize("protocol", ["mbus", "modbus-rtu"])
def test_a_polled_bus_whose_port_another_holds_fails_the_attempt_and_holds_its_own(
    protocol: str, request: pytest.FixtureRequest
) -> None:
    """A scan holding the port while the gateway polls: each attempt fails, saying why (a failed
    attempt, the meter offline after enough of them, as for an unplugged converter); once the scan
    lets go the next attempt reads, and then the gateway's own port is refused to a scan."""
    line: SerialLine = request.getfixturevalue("mbus_line" if protocol == "mbus" else "rtu_line")
    transport, bus, meter = _transport(protocol, line.port)

    async def attempt() -> Reading:
        return await attempt_once(transport, bus, meter)

    async def scenario() -> None:
        scanner = _held(line.port)
        try:
            with pytest.raises(PollError) as failed:  # the scheduler's failed attempt
                await attempt()
        finally:
            scanner.close()
        # the bus's failure, in the same form for both (tests/gateway/test_poll_warning_prefix.py)
        assert str(failed.value) == f"{bus.name}: cannot open {line.port}: {IN_USE}"
        assert not _answered(line)  # nothing was sent on the line another program holds
        reading = await attempt()
        assert reading.meter_id == meter.meter_id
        assert _refused_to_another(line.port)  # the gateway holds its port between polls
        await transport.close()
        assert not _refused_to_another(line.port)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_receiver_another_program_holds_is_tried_again_and_then_held(caplog: pytest.LogCaptureFixture) -> None:
    """A wM-Bus receiver: its port in use is a warning and a later try, as a receiver unplugged is
    (the listener lives on); once the port is free the listener opens it, and holds it."""
    master, slave = os.openpty()
    port = os.ttyname(slave)
    os.close(slave)
    caplog.set_level(logging.WARNING, logger="gateway.wmbus")

    async def heard(reading: Reading) -> None:
        pass

    listener = WMBusListener(_radio(port), on_reading=heard, on_heard=lambda meter, ok, error=None: None)

    async def scenario() -> None:
        other = _held(port)
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        try:
            while not any(IN_USE in r.getMessage() for r in caplog.records):
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
            assert not listener.port_open
            other.close()
            while not listener.port_open:  # tried again after its wait (0.5-1 s)
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
            assert await asyncio.to_thread(_refused_to_another, port)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert await asyncio.to_thread(_refused_to_another, port) is False

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        os.close(master)
    warning = next(r.getMessage() for r in caplog.records if IN_USE in r.getMessage())
    assert warning.startswith(f"radio: cannot open {port}: {IN_USE}; trying again in ")
