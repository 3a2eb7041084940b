"""``aquami gateway run``'s log of a meter that does not answer is the gateway's own line, said once
per episode (gateway.episodes), not pymodbus's besides.

Before, pymodbus 3.16 logged every request left unanswered (``No response received after 0 retries,
continue with next request``, with the frame it sent, ``>>>>> send: 0x5 0x4 …``) beside the
scheduler's ``… failed after 1 attempt, the last: …`` line, which already says it: an offline meter
polled every minute wrote pymodbus's internals into the log every minute.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aquami.ports import free_port
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine
from tests.gateway.helpers import bus_config_text, meters
from tests.gateway.test_modbus_rtu import PARITY

AQUAMI = str(Path(sys.executable).with_name("aquami"))


@pytest.fixture
def one_meter() -> Iterator[SerialLine]:
    """An RTU bus with one meter, at unit 1: any other unit asked is silent."""
    simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E")).start()
    yield simulator.line
    simulator.stop()


def _run_until(config: Path, log_path: Path, done: object, timeout: float, linger_s: float = 0.0) -> str:
    """``aquami gateway run`` until ``done()`` is true of its log (or ``timeout``), then ``linger_s``
    more, then SIGTERM."""
    assert callable(done)
    with log_path.open("w") as log:
        gateway = subprocess.Popen([AQUAMI, "gateway", "run", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while not done(log_path.read_text()) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(linger_s)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
    return log_path.read_text()


def test_a_silent_meter_is_our_line_once_and_no_pymodbus_line(tmp_path: Path, one_meter: SerialLine) -> None:
    bus = {
        "name": "rtu-1",
        "protocol": "modbus-rtu",
        "device": one_meter.port,
        "parity": PARITY,
        "timeout_s": 0.2,
        "poll_interval_s": 0.3,
        "retries": 0,
        "jitter": 0.0,
    }
    config = tmp_path / "gw.toml"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none there: the readings wait in the spool
    silent = {"meter_id": "WM-0005", "unit_id": 5}  # no meter at unit 5
    config.write_text(bus_config_text(broker, tmp_path / "s.sqlite", bus, [silent], gateway_id="gw-quiet"))
    failed = "WM-0005 on rtu-1: failed after 1 attempt, the last: "
    # polled every 0.3 s: about 5 more polls fail after the first
    log = _run_until(config, tmp_path / "gateway.log", lambda text: failed in text, 60, linger_s=1.5)
    ours = [line for line in log.splitlines() if failed in line]
    assert len(ours) == 1, log  # the episode's first failure (before: a line for each poll)
    assert "no answer" in ours[0].lower() or "no response" in ours[0].lower(), ours[0]
    assert "pymodbus" not in log and ">>>>>" not in log, log  # (before: pymodbus's lines for each poll)


def test_a_bus_that_will_not_open_is_our_lines_and_no_pymodbus_repeating(tmp_path: Path) -> None:
    """Two meters on an RTU bus whose device is not there (the README's example gateway.toml, its
    ``rtu-1`` on ``/dev/ttyUSB0``, run where no adapter is plugged in). pymodbus's ``Failed to
    connect`` is dropped (the attempt's ``cannot open`` line says it), but pymodbus writes a line
    the same as the one before it as ``Repeating....``, and that stand-in went through alone:
    ``WARNING pymodbus.logging: Repeating....`` between the gateway's own lines."""
    bus = {
        "name": "rtu-1",
        "protocol": "modbus-rtu",
        "device": str(tmp_path / "ttyUSB0"),  # never there
        "timeout_s": 0.2,
        "poll_interval_s": 0.3,
        "retries": 0,
        "jitter": 0.0,
    }
    config = tmp_path / "gw.toml"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none there: the readings wait in the spool
    units = [{"meter_id": "DMA-7-INLET", "unit_id": 1}, {"meter_id": "PULSE-0001", "unit_id": 2}]
    config.write_text(bus_config_text(broker, tmp_path / "s.sqlite", bus, units, gateway_id="gw-unplugged"))
    failed = "on rtu-1: failed after 1 attempt, the last: rtu-1: cannot open "
    log = _run_until(config, tmp_path / "gateway.log", lambda text: text.count(failed) >= 2, 60, linger_s=1.5)
    assert log.count(failed) == 2, log  # each meter's first failed poll, said by the gateway, once
    assert "pymodbus" not in log and "Repeating" not in log, log
