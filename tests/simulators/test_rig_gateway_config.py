"""From the rig to a gateway, as a technician goes: ``aquami simulate rig --gateway-config gw.toml``,
then ``aquami gateway run gw.toml``, and every meter of the rig is read and published.

Before, there was no such option: the rig printed its pty paths (new at each start) and a technician
wrote the gateway's file by hand, each run again, and found by trial that its 8E1 lines open only
with ``parity = "N"`` here (tests/simulators/test_rig_run.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aquami.contracts.reads import Reading
from simulators.rig.client import meters as rig_meters
from simulators.rig.gateway_config import MARK
from tests.gateway.helpers import Subscriber
from tests.services import MosquittoBroker

AQUAMI = str(Path(sys.executable).with_name("aquami"))
EXAMPLE = Path(__file__).parents[2] / "simulators" / "examples" / "rig.toml"


def _rig_file(folder: Path) -> Path:
    """The example rig on ports of its own (a free TCP port, a free control port), its radio meter
    sending every second."""
    text = EXAMPLE.read_text().replace("port = 5020", "port = 0").replace('"127.0.0.1:8470"', '"127.0.0.1:0"')
    path = folder / "rig.toml"
    path.write_text(text.replace("interval_s = 16", "interval_s = 1"))
    return path


@contextmanager
def _running(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen([AQUAMI, *args], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_rig_writes_a_gateway_config_that_reads_every_meter(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    rig_file, config = _rig_file(tmp_path), tmp_path / "gw.toml"
    config.write_text(f"{MARK} at its start\ngateway_id = 'stale'\n")  # the last run's: written again
    subscriber = Subscriber(mosquitto.url, ["aquami/v1/aquami-rig/reads"], client_id="rig-config-test")
    rig_log, gateway_log = tmp_path / "rig.log", tmp_path / "gateway.log"
    try:
        rig_args = ["simulate", "rig", "--config", str(rig_file), "--no-table"]
        with _running([*rig_args, "--gateway-config", str(config), "--gateway-mqtt", mosquitto.url], rig_log) as rig:
            said = f"gateway config: {config}  (aquami gateway run {config})"
            _wait_for(lambda: said in rig_log.read_text() or rig.poll() is not None, 60, "the rig's gateway config")
            assert rig.poll() is None, rig_log.read_text()  # before: "No such option: --gateway-config", exit 2
            text = config.read_text()
            assert text.startswith(MARK) and "stale" not in text
            for line in rig_log.read_text().splitlines():
                if "(modbus_rtu)" in line or "(mbus)" in line:  # the device and parity the rig says
                    device, parity = line.split()[2], line.split()[5][1]
                    assert f'device = "{device}"' in text and f'parity = "{parity}"' in text, (line, text)
            with _running(["gateway", "run", str(config)], gateway_log):
                meters = {"M000001", "M000002", "P000001", "MB000001", "MB000002", "W000001", "DMA1-INLET"}

                def read() -> set[str]:
                    return {r["meter_id"] for batch in subscriber.payloads("/reads") for r in batch["readings"]}

                deadline = time.monotonic() + 90
                while not read() >= meters and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert read() >= meters, (sorted(read()), gateway_log.read_text())
            assert "WARNING" not in gateway_log.read_text(), gateway_log.read_text()  # no failed poll
        buses = {r["meter_id"]: r["source"]["bus"] for b in subscriber.batches() for r in b["readings"]}
        assert buses["MB000002"] == "mbus-1" and buses["P000001"] == "rs485-1" and buses["W000001"] == "wmbus-usb"
    finally:
        subscriber.close()


def test_a_file_the_rig_did_not_write_is_never_overwritten(tmp_path: Path) -> None:
    rig_file, config = _rig_file(tmp_path), tmp_path / "gateway.toml"
    own = 'gateway_id = "gw-north-1"  # the gateway\'s own configuration\n'
    config.write_text(own)
    done = subprocess.run(
        [AQUAMI, "simulate", "rig", "--config", str(rig_file), "--no-table", "--gateway-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 2, (done.stdout, done.stderr)  # refused before the rig starts
    assert "was not written by a rig" in done.stderr and "not overwritten" in done.stderr, done.stderr
    assert done.stdout == "" and config.read_text() == own


def test_the_rig_s_m_bus_and_radio_meters_alarms_reach_the_published_readings(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The rig's M-Bus and wM-Bus meters say their alarms in an error flags record, whose bits the
    gateway reads only with the meter's `error_flags` map. The file the rig wrote had none: a reverse
    flow or tamper the technician injected showed in the rig's table and reached no reading."""
    rig_file, config = _rig_file(tmp_path), tmp_path / "gw.toml"
    # The meters step every second: the faults take effect within one, not at the default minute's
    # step (up to 60 s waited). Installed two days ago (a reverse flow alarm looks back a day), not on
    # the example's 1 January, so the rig does not draw the year's water second by second at its start.
    installed = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
    rig_file.write_text(rig_file.read_text().replace("[rig]\n", f'[rig]\nstep_s = 1\ninstalled = "{installed}"\n', 1))
    subscriber = Subscriber(mosquitto.url, ["aquami/v1/aquami-rig/reads"], client_id="rig-alarms-test")
    rig_log, gateway_log = tmp_path / "rig.log", tmp_path / "gateway.log"
    try:
        rig_args = ["simulate", "rig", "--config", str(rig_file), "--no-table"]
        with _running([*rig_args, "--gateway-config", str(config), "--gateway-mqtt", mosquitto.url], rig_log) as rig:
            said = f"gateway config: {config}  (aquami gateway run {config})"
            _wait_for(lambda: said in rig_log.read_text() or rig.poll() is not None, 60, "the rig's gateway config")
            assert rig.poll() is None, rig_log.read_text()
            (control,) = re.findall(r"^faults: (http://\S+)", rig_log.read_text(), re.MULTILINE)
            for meter, kind in (("MB000001", "reverse_flow"), ("W000001", "tamper")):  # as a technician does
                fault = [AQUAMI, "simulate", "fault", "--rig", control, meter, kind]
                injected = subprocess.run(fault, capture_output=True, text=True, timeout=30)
                assert injected.returncode == 0, injected.stderr

            def raised() -> bool:  # from the meter model's next step, within a second
                return {(r["meter"], a) for r in rig_meters(control) for a in r["alarms"]} >= {
                    ("MB000001", "reverse_flow"),
                    ("W000001", "tamper"),
                }

            _wait_for(raised, 90, "the rig's meters to raise the alarms")
            with _running(["gateway", "run", str(config)], gateway_log):

                def alarms() -> dict[str, list[str]]:
                    readings = (r for batch in subscriber.payloads("/reads") for r in batch["readings"])
                    return {r["meter_id"]: r.get("alarms", []) for r in readings}

                wanted = {"MB000001", "MB000002", "W000001"}
                _wait_for(lambda: alarms().keys() >= wanted, 90, f"readings of {sorted(wanted)}")
        seen = alarms()
        assert "reverse_flow" in seen["MB000001"] and "tamper" in seen["W000001"], (seen, gateway_log.read_text())
        assert seen["MB000002"] == []  # the other meter on the line says none
    finally:
        subscriber.close()


def test_the_rig_s_m_bus_meters_on_a_primary_address_have_their_identification_checked(tmp_path: Path) -> None:
    """The file names each M-Bus meter on a primary address with the identification the rig gives it:
    another meter answering at that address is refused by the gateway (gateway.mbus_identity), not
    read as this one. Before, its address alone."""
    import asyncio

    from gateway.config import parse_config_text
    from simulators.rig.config import parse_rig_text
    from simulators.rig.gateway_config import gateway_config_text
    from simulators.rig.runner import Rig

    rig = Rig(parse_rig_text(_rig_file(tmp_path).read_text()))

    async def written() -> str:
        await rig.start()
        try:
            return gateway_config_text(rig, "mqtt://127.0.0.1:1", "spool.sqlite")
        finally:
            await rig.stop()

    config = parse_config_text(asyncio.run(written()))
    m_bus = {
        m.meter_id: (m.unit_id, m.secondary_address, m.identification) for m in config.meters if m.profile == "mbus"
    }
    assert m_bus == {"MB000001": (1, None, "26000001"), "MB000002": (0xFD, "26000002", None)}


def test_the_rig_s_modbus_meters_have_their_serial_number_checked(tmp_path: Path) -> None:
    """The file names each Modbus meter whose profile reads a serial number with the one the rig
    serves (the rig file's, else derived from its id): another meter at its unit id is refused by the
    gateway (gateway.modbus_identity). A pulse counter has none."""
    import asyncio

    from gateway.config import parse_config_text
    from simulators.modbus_unit import serial_number_for
    from simulators.rig.config import parse_rig_text
    from simulators.rig.gateway_config import gateway_config_text
    from simulators.rig.runner import Rig

    rig = Rig(parse_rig_text(_rig_file(tmp_path).read_text()))

    async def written() -> str:
        await rig.start()
        try:
            return gateway_config_text(rig, "mqtt://127.0.0.1:1", "spool.sqlite")
        finally:
            await rig.stop()

    config = parse_config_text(asyncio.run(written()))
    modbus = {m.meter_id: m.serial_number for m in config.meters if m.profile not in ("mbus", "wmbus")}
    assert modbus == {
        "M000001": serial_number_for("M000001"),
        "M000002": "40012345",  # the rig file's
        "P000001": None,
        "DMA1-INLET": serial_number_for("DMA1-INLET"),
    }


UNSET_RIG = """
[rig]
control = "127.0.0.1:0"

[[transport]]
name = "plant-tcp"
protocol = "modbus_tcp"
port = 0

[[meter]]
id = "NEVER-SET"
kind = "smart_water_meter"
transport = "plant-tcp"
address = 1
serial_number = "0"

[[meter]]
id = "ERASED"
kind = "smart_water_meter"
transport = "plant-tcp"
address = 2
serial_number = "4294967295"

[[meter]]
id = "LABELLED"
kind = "smart_water_meter"
transport = "plant-tcp"
address = 3
serial_number = "40000003"
"""


def test_a_rig_meter_whose_serial_number_was_never_set_is_read_from_the_file_the_rig_writes(tmp_path: Path) -> None:
    """A rig meter given ``serial_number = "0"`` (or all ones), as a meter leaves the factory, is
    served so, and the gateway file names no serial number for it: the gateway refuses one never set
    in its configuration (one that tells no meter from another) and reads such a meter unchecked.
    Before, the file named it (``serial_number = "0"``) and the gateway refused to load the file."""
    import asyncio

    from gateway.config import ModbusTcpBusConfig, load_config
    from gateway.modbus_transport import ModbusTcpTransport
    from gateway.profiles import ProfileBook
    from gateway.scheduler import BusScheduler

    rig_file, config = tmp_path / "rig.toml", tmp_path / "gw.toml"
    rig_file.write_text(UNSET_RIG)
    args = ["simulate", "rig", "--config", str(rig_file), "--no-table", "--gateway-config", str(config)]
    rig_log = tmp_path / "rig.log"
    with _running(args, rig_log) as rig:
        said = f"gateway config: {config}"
        _wait_for(lambda: said in rig_log.read_text() or rig.poll() is not None, 60, "the rig's gateway config")
        assert rig.poll() is None, rig_log.read_text()
        gateway = load_config(config)  # before: ConfigError, meters[0].serial_number: 0 is the register of …
        assert {m.meter_id: m.serial_number for m in gateway.meters} == {
            "NEVER-SET": None,
            "ERASED": None,
            "LABELLED": "40000003",
        }
        (bus,) = gateway.buses
        assert isinstance(bus, ModbusTcpBusConfig)
        transport = ModbusTcpTransport(bus, ProfileBook())
        stored: list[str] = []

        async def store(reading: Reading) -> None:
            stored.append(reading.meter_id)

        scheduler = BusScheduler(bus, transport, on_reading=store)

        async def poll_each() -> list[str | None]:
            try:
                return [(await scheduler.read_now(m))[1] for m in ("NEVER-SET", "ERASED", "LABELLED")]
            finally:
                await transport.close()

        errors = asyncio.run(asyncio.wait_for(poll_each(), 60))
    assert errors == [None, None, None] and stored == ["NEVER-SET", "ERASED", "LABELLED"]
