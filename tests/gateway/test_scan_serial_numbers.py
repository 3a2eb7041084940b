"""A Modbus scan shows each unit's serial number, its snippet pins each meter with it, and a unit
answering with the serial number of a meter of the bus is said with that meter (a swap seen in a scan).

Before, ``gateway scan`` and the MQTT ``scan`` command showed no serial number: a technician
commissioning a bus, or looking into a refused poll, read labels in a pit, and a pasted snippet left
each meter checked against whichever meter answered first.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.commands import reply_errors
from aquami.ports import free_port
from firmware_protocols.modbus import load_profile
from gateway.config import ModbusRtuBusConfig, parse_config_text
from gateway.modbus_identity import NOT_SET, SerialNumberMismatch
from gateway.modbus_transport import ModbusRtuTransport
from gateway.profiles import ProfileBook
from gateway.scan import Found, SerialOwner, snippet
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings
from simulators.smart_meter import SteadyFlow
from tests.gateway.helpers import CountingMeter, bus_config_text, scan_command_after
from tests.gateway.test_modbus_rtu import PARITY

AQUAMI = str(Path(sys.executable).with_name("aquami"))
PROFILE = load_profile("smart_water_meter")
SERIALS = {5: "40000005", 6: "40000006", 7: "1234567890"}


def _meters() -> list[CountingMeter]:
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        CountingMeter(f"FLAT-{unit}", unit, PROFILE, SteadyFlow(start, 100.0 * unit, 0.5), serial_number=serial)
        for unit, serial in SERIALS.items()
    ]


def _config(tmp_path: Path, port: str, meters: list[dict[str, Any]]) -> Path:
    """A gateway file with the bus ``rtu-1`` on ``port`` and ``meters`` on it (polled hourly: a test's
    ``read-now`` polls them)."""
    bus = {"name": "rtu-1", "protocol": "modbus-rtu", "device": port, "parity": PARITY, "timeout_s": 0.3}
    config = tmp_path / "gw.toml"
    config.write_text(
        bus_config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            tmp_path / "s.sqlite",
            {**bus, "poll_interval_s": 3600},
            meters,
            gateway_id="g",
        )
    )
    return config


def _scan(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AQUAMI, "gateway", "scan", str(config), "--bus", "rtu-1", "--first", "4", "--last", "8", *options],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_the_snippet_pins_each_meter_with_its_serial_number_and_the_gateway_reads_them(tmp_path: Path) -> None:
    """Round trip: the snippet, pasted after the bus, loads; each meter carries the serial number its
    unit answered with, and the gateway reads them all. Pinned from the start: once two of them have
    their unit ids swapped, their polls are refused (a first answer is not needed to know them)."""
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, [])
        done = _scan(config)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == ["# 3 meters found on rtu-1 (units 4..8)"]
        tables = tomllib.loads(done.stdout)["meters"]
        assert [(t["unit_id"], t["serial_number"]) for t in tables] == sorted(SERIALS.items())

        loaded = parse_config_text(config.read_text() + "\n" + done.stdout)
        assert [(m.unit_id, m.serial_number) for m in loaded.meters] == sorted(SERIALS.items())
        bus = loaded.buses[0]
        assert isinstance(bus, ModbusRtuBusConfig)

        async def read_all() -> tuple[list[float], list[str]]:
            transport = ModbusRtuTransport(bus, ProfileBook())
            try:
                volumes = [(await transport.read(meter)).volume_m3 for meter in loaded.meters]
                sim.slaves.swap_unit_ids(5, 6)
                refused = []
                for meter in loaded.meters[:2]:
                    try:
                        await transport.read(meter)
                    except SerialNumberMismatch as error:
                        refused.append(str(error).split(":")[0])
                return volumes, refused
            finally:
                await transport.close()

        volumes, refused = asyncio.run(asyncio.wait_for(read_all(), 30))
    assert [int(v // 100) for v in volumes] == [5, 6, 7]  # each meter its own register (100 m3 a unit, +12 a day)
    assert refused == ["rtu-1-unit-5", "rtu-1-unit-6"]


def test_a_scan_after_a_swap_names_the_meters_configured_with_those_serial_numbers(tmp_path: Path) -> None:
    """FLAT-5 and FLAT-6 pinned in the configuration; their unit ids swapped by a technician: the
    scan says, on its standard error and in each table, whose serial number answered where."""
    pinned = [{"meter_id": f"FLAT-{u}", "unit_id": u, "serial_number": SERIALS[u]} for u in (5, 6)]
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        sim.slaves.swap_unit_ids(5, 6)
        done = _scan(_config(tmp_path, sim.port, pinned))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# unit 5 answered with serial number 40000006, FLAT-6's (configured with it, at unit 6): "
        "unit ids swapped, or the meter moved?",
        "# unit 6 answered with serial number 40000005, FLAT-5's (configured with it, at unit 5): "
        "unit ids swapped, or the meter moved?",
        "# 3 meters found on rtu-1 (units 4..8)",
    ]
    assert (
        'unit_id = 5\nprofile = "smart_water_meter"\nserial_number = "40000006"  # FLAT-6\'s (configured with it, '
        "at unit 6): unit ids swapped, or the meter moved?\n" in done.stdout
    )
    assert 'unit_id = 7\nprofile = "smart_water_meter"\nserial_number = "1234567890"\n' in done.stdout


def test_the_scan_command_names_meters_by_the_serial_number_pinned_or_remembered(tmp_path: Path) -> None:
    """Through the gateway: FLAT-5 is known by its first answer's serial number (remembered in the
    spool), FLAT-6 by its configured one. After their swap, the ``scan`` command's reply names each
    meter at the unit where its serial number now answers, and holds to the commands contract."""
    meters = [{"meter_id": "FLAT-5", "unit_id": 5}, {"meter_id": "FLAT-6", "unit_id": 6, "serial_number": "40000006"}]
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, meters)

        def swap() -> None:
            sim.slaves.swap_unit_ids(5, 6)

        reply = scan_command_after(config, ["FLAT-5", "FLAT-6"], swap, {"bus": "rtu-1", "first": 4, "last": 8})
    assert reply["found"] == [5, 6, 7]
    assert reply["serial_numbers"] == [
        {"unit_id": 5, "serial_number": "40000006", "meter_id": "FLAT-6", "meter_unit_id": 6, "pinned": True},
        {"unit_id": 6, "serial_number": "40000005", "meter_id": "FLAT-5", "meter_unit_id": 5, "pinned": False},
        {"unit_id": 7, "serial_number": "1234567890"},
    ]
    assert "serial_number = \"40000005\"  # FLAT-5's (its first answer's, at unit 5)" in reply["snippet"]
    assert reply_errors("scan", {**reply, "request_id": "r", "ok": True}) == []


@given(
    st.lists(
        st.tuples(st.integers(1, 247), st.integers(0, 2**32 - 1), st.booleans()), unique_by=lambda t: t[0], max_size=8
    ).filter(lambda units: len({serial for _, serial, _ in units}) == len(units))
)
def test_a_snippet_loads_back_with_each_unit_s_serial_number(units: list[tuple[int, int, bool]]) -> None:
    """Whatever the serial numbers (a u32 register's), and with or without a meter named beside
    them, the tables load back as the same units with the same serial numbers; a register never set
    (0, all ones: the transport hears NOT_SET) as units without one."""
    heard = {serial: NOT_SET if serial in (0, 2**32 - 1) else str(serial) for _, serial, _ in units}
    found = [
        Found(unit, "smart_water_meter", 1.5, {}, heard[serial], SerialOwner("OTHER-1", 1, True) if named else None)
        for unit, serial, named in units
    ]
    head = bus_config_text(
        "mqtt://127.0.0.1:1", "s.sqlite", {"name": "b", "protocol": "modbus-rtu", "device": "/dev/null"}, [],
        gateway_id="g",
    )  # fmt: skip
    loaded = parse_config_text(head + "\n" + snippet("b", found))
    expected = [(u, None if heard[s] == NOT_SET else str(s)) for u, s, _ in units]
    assert [(m.unit_id, m.serial_number) for m in loaded.meters] == expected
