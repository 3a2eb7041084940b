"""``aquami gateway scan``'s standard error is its own lines: the count found, or one line saying
why the bus cannot be used.

Before, pymodbus logged two or more lines for every unit that did not answer (``No response received
after 0 retries, continue with next request`` and ``>>>>> send: …``): 511 around the count on an RTU
bus of one meter scanned 1..247, the scan's own lines lost among them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, SerialLine
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
    assert any(" DEBUG pymodbus.logging: Processing: 0x1 0x4 0x10 " in line for line in lines)
