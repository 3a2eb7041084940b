"""``aquami gateway scan`` on a bus that cannot be used says so and exits 1.

Before, an M-Bus bus whose device would not open was taken for a collision on every selection: the
secondary search went on through 10^8 addresses at 100% CPU, printed nothing and ignored Ctrl-C; a
Modbus bus that would not open (a refused TCP port, a missing serial device) was "0 meters found",
exit 0, and a technician concluded the bus was empty. A wM-Bus receiver was a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aquami.ports import free_port
from tests.gateway.helpers import bus_config_text

AQUAMI = str(Path(sys.executable).with_name("aquami"))
MISSING = "/dev/ttyAQUAMI-not-plugged-in"


def _scan(tmp_path: Path, bus: dict[str, Any], *options: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """(``COLUMNS``: a usage error's box wraps at the terminal's width.)"""
    config = tmp_path / "gw.toml"
    config.write_text(bus_config_text("mqtt://127.0.0.1:1", tmp_path / "s.sqlite", bus, [], gateway_id="g"))
    started = time.monotonic()
    done = subprocess.run(
        [AQUAMI, "gateway", "scan", str(config), "--bus", str(bus["name"]), *options],
        capture_output=True,
        text=True,
        timeout=60,  # (before: for good)
        env={**os.environ, "COLUMNS": "400"},
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    ("bus", "said"),
    [
        # the system's reason once, as a Modbus RTU bus's (before, pyserial's: "[Errno 2] could not
        # open port /dev/…: [Errno 2] No such file or directory: '/dev/…'")
        (
            {"name": "m", "protocol": "mbus", "device": MISSING},
            f"m: search stopped, 0 found by then: m: cannot open {MISSING}: No such file or directory "
            "(unplugged, or another device name? ls /dev/serial/by-id/)",
        ),
        (
            {"name": "r", "protocol": "modbus-rtu", "device": MISSING},
            f"r: cannot open {MISSING}: No such file or directory "
            "(unplugged, or another device name? ls /dev/serial/by-id/)",
        ),
        ({"name": "t", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": "FREE"}, "t: cannot open 127.0.0.1:"),
    ],
)
def test_a_bus_that_will_not_open_is_an_error_not_an_empty_bus(tmp_path: Path, bus: dict, said: str) -> None:
    if bus.get("port") == "FREE":
        bus = {**bus, "port": free_port()}  # nothing listens there: refused
    done, took_s = _scan(tmp_path, bus, "--first", "1", "--last", "5")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert (
        [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        == [line for line in done.stderr.splitlines() if line.startswith(f"error: {said}")]
        != []
    )
    assert "Traceback" not in done.stderr and "meters found" not in done.stderr and done.stdout == ""
    assert took_s < 30


def test_a_wmbus_receiver_is_not_scanned_and_first_must_come_before_last(tmp_path: Path) -> None:
    receiver = {"name": "radio", "protocol": "wmbus", "device": MISSING}
    done, _ = _scan(tmp_path, receiver)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: bus 'radio' is a wM-Bus receiver: its meters send, nothing is scanned"
    backwards, _ = _scan(
        tmp_path,
        {"name": "t", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": 1},
        "--first",
        "10",
        "--last",
        "5",
    )
    assert backwards.returncode == 2 and "--first 10 is after --last 5" in backwards.stderr


def test_an_output_whose_folder_is_missing_is_refused_before_the_bus_is_touched(tmp_path: Path) -> None:
    """Exit 2, as every command's output file in a missing folder is (``check_output_folder``).
    Before, the whole scan ran first (minutes, for 247 unit ids), then its snippet was lost: exit 1."""
    with socket.create_server(("127.0.0.1", 0)) as listening:  # a Modbus TCP peer that never answers
        listening.setblocking(False)
        port = listening.getsockname()[1]
        bus = {"name": "t", "protocol": "modbus-tcp", "host": "127.0.0.1", "port": port, "timeout_s": 0.5}
        missing = tmp_path / "not-made" / "meters.toml"
        done, _ = _scan(tmp_path, bus, "--first", "1", "--last", "2", "--output", str(missing))
        with pytest.raises(BlockingIOError):
            listening.accept()  # no one connected: the bus was not scanned
    assert done.returncode == 2, done.stderr
    assert f"{missing}: there is no folder {missing.parent}" in done.stderr
    assert "Traceback" not in done.stderr and "meters found" not in done.stderr
    assert not missing.parent.exists()
