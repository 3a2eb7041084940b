"""The command line's scan knows a meter configured without its serial number by the one its first
answer carried, as the gateway's spool remembers it, read read-only (gateway.spool_reader).

Before, ``aquami gateway scan`` did not read the spool: a swap or an exchange of unpinned meters was
named by the MQTT ``scan`` command (run inside the gateway) and not by the command line's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import load_config
from gateway.meter_identity import FirstAnswer
from gateway.service import Gateway
from gateway.spool import Spool
from gateway.spool_reader import ReadOnlyIdentities, Remembered, remembered_in_spool
from simulators.mbus_bus import MBusSimulator, mbus_line
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings
from tests.gateway.helpers import running, scan_command_after, until
from tests.gateway.test_mbus_identification import NOW, _water_meter
from tests.gateway.test_scan_exchanged import _mbus_config
from tests.gateway.test_scan_serial_numbers import AQUAMI, _config, _meters, _scan

UNPINNED = [{"meter_id": "FLAT-5", "unit_id": 5}, {"meter_id": "FLAT-6", "unit_id": 6}]
SWAP_SAID = [
    "# unit 5 answered with serial number 40000006, FLAT-6's (its first answer's, at unit 6): "
    "unit ids swapped, or the meter moved?",
    "# unit 6 answered with serial number 40000005, FLAT-5's (its first answer's, at unit 5): "
    "unit ids swapped, or the meter moved?",
    "# 3 meters found on rtu-1 (units 4..8)",
]


def _read_by_a_gateway(config: Path, meter_ids: list[str]) -> None:
    """A gateway started from ``config`` reads each of ``meter_ids`` once (its first answer's serial
    number remembered in the spool), then stops."""

    async def scenario() -> None:
        gateway = Gateway(load_config(config), config_path=config)
        async with running(gateway):
            await until(lambda: gateway._commands is not None, 10)
            assert gateway._commands is not None
            for meter_id in meter_ids:
                assert (await gateway._commands.read_now({"meter_id": meter_id}))["ok"]

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_command_line_scan_names_a_swap_of_meters_known_by_their_first_answer(tmp_path: Path) -> None:
    """FLAT-5 and FLAT-6 configured without a serial number, read once by a gateway, then swapped:
    the command line's scan names each at the unit where its serial number now answers, reading the
    spool while a gateway holds it (its lock, as a running one does), which writes to it afterwards."""
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, UNPINNED)
        _read_by_a_gateway(config, ["FLAT-5", "FLAT-6"])
        sim.slaves.swap_unit_ids(5, 6)
        held = Spool(tmp_path / "s.sqlite")  # (the gateway's: its lock held while the scan reads)
        try:
            done = _scan(config)
            held.save_identity("FLAT-7", "1234567890", "2026-12-07T00:00:00Z")  # still the gateway's to write
            assert held.load_identity("FLAT-7") == ("1234567890", "2026-12-07T00:00:00Z", None)
        finally:
            held.close()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == SWAP_SAID
    assert "serial_number = \"40000006\"  # FLAT-6's (its first answer's, at unit 6)" in done.stdout


def test_a_spool_that_cannot_be_read_is_said_and_left_as_it_is(tmp_path: Path) -> None:
    """A spool file that is not a database: the scan says so, naming the meters it knows by nothing
    then, scans all the same (exit 0), and the file is as it was."""
    spool = tmp_path / "s.sqlite"
    spool.write_bytes(b"not a database " * 512)
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        sim.slaves.swap_unit_ids(5, 6)
        done = _scan(_config(tmp_path, sim.port, UNPINNED))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"# the spool {spool} could not be read (file is not a database): FLAT-5, FLAT-6 (configured without "
        "a serial number): known by none in this scan",
        "# 3 meters found on rtu-1 (units 4..8)",
    ]
    assert spool.read_bytes() == b"not a database " * 512


def test_a_spool_not_there_is_not_made(tmp_path: Path) -> None:
    """No gateway has run from the file: nothing is remembered, nothing said of it, no spool made."""
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        done = _scan(_config(tmp_path, sim.port, UNPINNED))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["# 3 meters found on rtu-1 (units 4..8)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.toml"]


def test_the_command_line_search_names_an_exchanged_m_bus_meter_known_by_its_first_answer(tmp_path: Path) -> None:
    """FLAT-8 configured at primary address 8 without its identification, read once by a gateway
    (88888888 remembered), then exchanged for 44444444: the command line's search says so."""
    with MBusSimulator([_water_meter("88888888", 8, 1.0)], mbus_line(9600), clock=lambda: NOW) as sim:
        config = _mbus_config(tmp_path, sim.port, [{"meter_id": "FLAT-8", "address": 8}])
        _read_by_a_gateway(config, ["FLAT-8"])
        sim.exchange("88888888", _water_meter("44444444", 0, 0.0))
        done = subprocess.run(
            [AQUAMI, "gateway", "scan", str(config), "--bus", "mbus-1"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "400"},
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# primary address 8 answered with identification 44444444, no meter's of mbus-1; FLAT-8 is configured "
        "there with 88888888 (its first answer's): the meter exchanged? pin the new one (FLAT-8's identification "
        '= "44444444") or set FLAT-8\'s address',
        "# 1 meters found on mbus-1 (secondary search)",
    ]


def test_a_spool_of_an_earlier_version_is_read_without_its_kinds(tmp_path: Path) -> None:
    """A spool whose identities table predates the identity's kind (no gateway of this version has
    opened it yet, and the scan, reading only, adds no column) is read all the same: its rows have no
    kind, as the gateway takes such rows. Before the read-only store asked for the kind, it failed
    with "no such column: kind" and the scan named no remembered meter."""
    spool = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(spool)) as db:
        db.execute("CREATE TABLE mbus_identities (meter_id TEXT PRIMARY KEY, identification TEXT, first_at TEXT)")
        db.execute("INSERT INTO mbus_identities VALUES ('FLAT-5', '40000005', '2026-12-06T00:00:00+00:00')")
        db.commit()
    store = ReadOnlyIdentities(spool)
    try:
        assert store.load_identity("FLAT-5") == ("40000005", "2026-12-06T00:00:00+00:00", None)
        assert store.load_identity("FLAT-6") is None
    finally:
        store.close()
    first = FirstAnswer("40000005", datetime(2026, 12, 6, tzinfo=UTC))  # (kind None)
    assert remembered_in_spool(spool, ["FLAT-5", "FLAT-6"]) == Remembered({"FLAT-5": first}, [], None)


def test_a_meter_remembered_by_its_m_bus_identification_is_no_owner_of_an_equal_serial_number(tmp_path: Path) -> None:
    """FLAT-8, moved from an M-Bus line to unit 8 of a Modbus bus, is remembered by its M-Bus
    identification 40000006; the meter at unit 6 answers with serial number 40000006. An
    identification and a serial number are different numbers (the gateway sets FLAT-8's aside at its
    next answer): neither the command line's scan nor the MQTT ``scan`` command names FLAT-8 as the
    owner of unit 6's serial number, nor says it known by it. Before, both did: "unit ids swapped, or
    the meter moved?"."""
    earlier = Spool(tmp_path / "s.sqlite")
    earlier.save_identity("FLAT-8", "40000006", "2026-12-06T00:00:00Z", "identification")
    earlier.close()
    meters = [{"meter_id": "FLAT-6", "unit_id": 6}, {"meter_id": "FLAT-8", "unit_id": 8}]
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, meters)
        done = _scan(config)
        reply = scan_command_after(config, [], lambda: None, {"bus": "rtu-1", "first": 4, "last": 8})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# unit 8 did not answer: FLAT-8 is configured there",
        "# 3 meters found on rtu-1 (units 4..8)",
    ]
    assert 'serial_number = "40000006"\n' in done.stdout
    assert reply["serial_numbers"][1] == {"unit_id": 6, "serial_number": "40000006"}
    assert reply["configured_meters"] == [
        {"meter_id": "FLAT-6", "address": 6, "answer": "unchecked", "answered_with": "40000006"},
        {"meter_id": "FLAT-8", "address": 8, "answer": "silent"},
    ]
