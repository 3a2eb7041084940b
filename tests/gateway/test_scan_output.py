"""``aquami gateway scan``'s standard error is its own lines: the count found, or one line saying
why the bus cannot be used.

Before, pymodbus logged two or more lines for every unit that did not answer (``No response received
after 0 retries, continue with next request`` and ``>>>>> send: …``): 511 around the count on an RTU
bus of one meter scanned 1..247, the scan's own lines lost among them. A bus that would not open said
``cannot open HOST:PORT`` (or the device), and only pymodbus's extra line said why (refused, no
answer, no such device).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aquami.ports import free_port
from gateway.buses import attempt_once
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.modbus_transport import ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.transport import LineUnusable
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import bus_config_text, meters
from tests.gateway.test_modbus_rtu import PARITY

AQUAMI = str(Path(sys.executable).with_name("aquami"))


def _scan(tmp_path: Path, bus: dict[str, Any], *options: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gw.toml"
    config.write_text(bus_config_text("mqtt://127.0.0.1:1", tmp_path / "s.sqlite", bus, [], gateway_id="g"))
    return subprocess.run(
        [AQUAMI, "gateway", "scan", str(config), "--bus", str(bus["name"]), *options],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )


@pytest.fixture
def one_meter() -> Iterator[SerialLine]:
    """An RTU bus with one meter, at unit 1."""
    simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E")).start()
    yield simulator.line
    simulator.stop()


def _rtu(port: str) -> dict[str, Any]:
    return {"name": "rtu-1", "protocol": "modbus-rtu", "device": port, "parity": PARITY, "timeout_s": 0.3}


def test_units_that_do_not_answer_are_not_a_line_each(tmp_path: Path, one_meter: SerialLine) -> None:
    done = _scan(tmp_path, _rtu(one_meter.port), "--first", "1", "--last", "6")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["# 1 meters found on rtu-1 (units 1..6)"]  # (before: 12 lines more)
    assert "unit_id = 1\n" in done.stdout and "unit_id = 2" not in done.stdout
    asked = {t.request[0] for t in one_meter.transactions}
    assert asked == {1, 2, 3, 4, 5, 6}  # every unit was asked, the five silent ones said nothing


def test_verbose_shows_the_frames(tmp_path: Path, one_meter: SerialLine) -> None:
    done = _scan(tmp_path, _rtu(one_meter.port), "--first", "1", "--last", "2", "--verbose")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[-1] == "# 1 meters found on rtu-1 (units 1..2)"
    sent = [line for line in lines if " DEBUG pymodbus.logging: send: " in line]
    assert [line.split("send: ")[1].split()[0] for line in sent] == ["0x1", "0x2"]  # each unit's request
    # unit 1's answer (as the bytes came: in one read or several, each read's buffer is logged whole)
    assert any(" DEBUG pymodbus.logging: Processing: 0x1 0x4 0x14 " in line for line in lines)


def test_a_refused_tcp_peer_is_said_in_our_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = _scan(tmp_path, {"name": "t", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: t: cannot open 127.0.0.1:{port}: Connection refused"]


def test_a_tcp_peer_that_takes_no_connection_is_said_to_be_silent(tmp_path: Path) -> None:
    """A peer whose queue of connections is full (or a firewall that drops): the connect has no
    answer. (Linux drops a SYN to a listener whose backlog is full: one connection fills ``listen(0)``.)"""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        port = full.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            bus = {"name": "t", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port, "timeout_s": 0.5}
            done = _scan(tmp_path, bus, "--first", "1", "--last", "3")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [f"error: t: cannot open 127.0.0.1:{port}: no answer within 0.5 s"]


def test_a_missing_serial_device_says_so_in_one_line(tmp_path: Path) -> None:
    missing = "/dev/ttyAQUAMI-not-plugged-in"
    done = _scan(tmp_path, _rtu(missing), "--first", "1", "--last", "3")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: rtu-1: cannot open {missing}: No such file or directory "
        "(unplugged, or another device name? ls /dev/serial/by-id/)"
    ]


def test_a_polled_bus_that_will_not_open_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    """In ``gateway run`` too: the failed attempt's error says why (the scheduler's warning and the
    meter's ``last_error`` carry it), and pymodbus's own ``Failed to connect …`` line is gone."""
    caplog.set_level(logging.DEBUG, logger="pymodbus")
    port = free_port()
    meter = MeterConfig("WM-0001", 1, "smart_water_meter")
    bus = ModbusTcpBusConfig("t", "127.0.0.1", port, (meter,), timeout_s=0.5)
    transport = ModbusTcpTransport(bus, ProfileBook())
    with pytest.raises(LineUnusable) as failed:
        asyncio.run(attempt_once(transport, bus, meter))
    assert str(failed.value) == f"t: cannot open 127.0.0.1:{port}: Connection refused"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_unit_that_answers_but_gives_no_reading_is_one_line(tmp_path: Path, one_meter: SerialLine) -> None:
    """A device at unit 1 that is not a meter of the profile asked with (it answers holding-register
    reads with exception 01h): said, once; the silent units 2..4 are not. Before, it was passed over
    as an empty address: ``# 0 meters found``, and nothing said a device answered."""
    done = _scan(
        tmp_path, _rtu(one_meter.port), "--first", "1", "--last", "4", "--profile", "electromagnetic_flow_meter"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[1] == "# 0 meters found on rtu-1 (units 1..4)", lines
    assert lines[0].startswith("# unit 1 answered: rtu-1-unit-1: exception response "), lines
    # in words, what was asked and of which profile; before, pymodbus's repr: `exception response
    # ExceptionResponse(dev_id=1, function_code=131, exception_code=1)`
    assert lines[0].endswith(
        "exception response 01h (illegal function) from unit 1 to a read of holding registers 4096..4108: "
        "not a meter of profile electromagnetic_flow_meter?"
    ), lines
    assert done.stdout.strip() == ""


def test_a_scan_of_the_tcp_simulator_says_only_its_meters(tmp_path: Path) -> None:
    """``aquami simulate modbus-tcp --meters 2``, scanned 1..4 as a technician would: before, units 3
    and 4, where nothing is, each came out as ``# unit 3 answered: … exception_code=4`` (pymodbus's
    simulator failed on them with a traceback and answered 'device failure'). They are answered 0Bh
    (gateway target device failed to respond) now, and a scan passes over 0Ah and 0Bh as silence."""
    port = free_port()
    simulator = subprocess.Popen(
        [AQUAMI, "simulate", "modbus-tcp", "--meters", "2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        assert "2 meters" in simulator.stdout.readline()  # listening
        bus = {"name": "tcp-1", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port, "timeout_s": 1.0}
        done = _scan(tmp_path, bus, "--first", "1", "--last", "4")
    finally:
        simulator.terminate()
        _, simulator_err = simulator.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["# 2 meters found on tcp-1 (units 1..4)"]
    assert "unit_id = 1\n" in done.stdout and "unit_id = 2\n" in done.stdout
    assert "Traceback" not in simulator_err, simulator_err


def test_a_unit_that_answers_after_the_timeout_is_said_with_the_cure(tmp_path: Path) -> None:
    """Unit 5 answers 0.7 s late on a bus with a 0.5 s timeout: the scan does not find it (its answer
    comes during unit 6's request), and says it answered late, and what to do; with a longer
    ``--timeout`` it is found. Before, the scan said only ``# 1 meters found``: the slow meter looked
    absent, and nothing hinted that a longer timeout would find it."""
    slow = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.7)])
    simulator = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(baudrate=9600, parity="E"), slow).start()
    try:
        bus = {**_rtu(simulator.port), "timeout_s": 0.5}
        done = _scan(tmp_path, bus, "--first", "5", "--last", "6")
        longer = _scan(tmp_path, bus, "--first", "5", "--last", "6", "--timeout", "2")
    finally:
        simulator.stop()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# unit 5 answered after the 0.5 s timeout, too late to be read: scan again with a longer --timeout "
        "(and raise the bus's timeout_s for the gateway to read it)",
        "# 1 meters found on rtu-1 (units 5..6)",
    ]
    assert "unit_id = 5" not in done.stdout and "unit_id = 6\n" in done.stdout
    assert longer.returncode == 0, longer.stderr
    assert longer.stderr.splitlines() == ["# 2 meters found on rtu-1 (units 5..6)"]
    assert "unit_id = 5\n" in longer.stdout


def test_the_last_unit_s_late_answer_is_heard_and_said_with_the_cure(tmp_path: Path) -> None:
    """Unit 5, the last one scanned, answers 0.7 s late on a bus with a 0.5 s timeout: no next unit's
    request listens for it, so the scan listens as long again before it closes the port, and says it
    as it says any other unit's. Before, the port was closed at once after it, its answer lost, and
    the scan said ``# 1 meters found`` alone, unit 5 as absent as an empty address."""
    slow = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.7)])
    simulator = ModbusRtuSimulator(meters(2, first_unit=4), LineSettings(baudrate=9600, parity="E"), slow).start()
    try:
        done = _scan(tmp_path, {**_rtu(simulator.port), "timeout_s": 0.5}, "--first", "4", "--last", "5")
    finally:
        simulator.stop()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# unit 5 answered after the 0.5 s timeout, too late to be read: scan again with a longer --timeout "
        "(and raise the bus's timeout_s for the gateway to read it)",
        "# 1 meters found on rtu-1 (units 4..5)",
    ]
    assert "unit_id = 4\n" in done.stdout and "unit_id = 5" not in done.stdout
