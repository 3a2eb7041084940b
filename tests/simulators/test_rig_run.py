"""The example rig running: each meter kind read on its own wire by its own client, faults on demand.

The rig's clock is the test's, so values can be checked against the meter models and faults moved in
time; the technician's command (``aquami simulate fault``) calls the rig's HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import re
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from rich.console import Console
from typer.testing import CliRunner

from aquami.cli import app
from firmware_protocols.mbus import build_req_ud2, build_snd_ud_select, decode_frame
from firmware_protocols.modbus import load_profile
from firmware_protocols.wmbus import decode_telegram, telegram_address
from firmware_protocols.wmbus.receiver import ReceivedTelegram, ReceiverStreamParser
from simulators.modbus_unit import serial_number_for
from simulators.rig.client import meters as rig_meters
from simulators.rig.config import parse_rig_text
from simulators.rig.control import ControlServer
from simulators.rig.runner import Rig
from simulators.rig.serve import describe
from simulators.rig.table import render
from tests.simulators.mbus_wire import PARITY, mbus

EXAMPLE = Path(__file__).parents[2] / "simulators" / "examples" / "rig.toml"
NOW = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)
KEY = bytes(range(16))


@dataclass
class Running:
    rig: Rig
    url: str
    clock: dict[str, datetime]

    def port(self, transport: str) -> str:
        return self.rig.where[transport]


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    text = EXAMPLE.read_text()
    text = text.replace("port = 5020", "port = 0").replace('"127.0.0.1:8470"', '"127.0.0.1:0"')
    text = text.replace('# installed = "2026-01-01T00:00:00Z"', 'installed = "2026-01-01T00:00:00Z"')
    text = text.replace("interval_s = 16", "interval_s = 0.2")
    config = parse_rig_text(text, now=NOW)
    clock = {"now": NOW}
    rig = Rig(config, clock=lambda: clock["now"])
    ready, stop = threading.Event(), threading.Event()
    holder: dict[str, ControlServer] = {}

    async def main() -> None:
        await rig.start()
        holder["control"] = ControlServer(rig, port=0).start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        holder["control"].stop()
        await rig.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield Running(rig, holder["control"].url, clock)
    stop.set()
    thread.join(10)


def fault(running: Running, *args: str) -> str:
    result = CliRunner().invoke(app, ["simulate", "fault", "--rig", running.url, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_modbus_tcp_smart_meter_and_dma_inlet(running: Running) -> None:
    host, port = running.port("plant-tcp").split(":")
    client = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
    assert client.connect()
    try:
        smart = load_profile("smart_water_meter")
        rr = client.read_input_registers(0, count=10, device_id=1)
        assert not rr.isError()
        truth = running.rig.meters["M000001"].model.read(NOW)
        smart_reading = smart.decode_registers(rr.registers)
        assert smart_reading["volume_m3"] == pytest.approx(truth.volume_m3, abs=1e-9)
        assert smart_reading["serial_number"] == serial_number_for("M000001")  # its own, derived from its id
        mag = load_profile("electromagnetic_flow_meter")
        rr = client.read_holding_registers(4096, count=13, device_id=10)
        assert not rr.isError()
        inlet = mag.decode_registers(rr.registers)
        assert inlet["serial_number"] == serial_number_for("DMA1-INLET")
        inlet_truth = running.rig.meters["DMA1-INLET"].model.read(NOW)
        assert inlet["volume_m3"] == pytest.approx(inlet_truth.volume_m3, abs=1e-9)
        customers = sum(running.rig.meters[c].model.read(NOW).flow_m3h for c in ("M000001", "M000002"))
        assert inlet["flow_m3h"] > customers  # the inlet sees the customers and the mains' leakage
    finally:
        client.close()


def test_modbus_rtu_pulse_counter(running: Running) -> None:
    client = ModbusSerialClient(running.port("rs485-1"), baudrate=9600, parity=PARITY, timeout=1.5, retries=0)
    assert client.connect()
    try:
        rr = client.read_input_registers(0, count=2, device_id=5)
        assert not rr.isError()
    finally:
        client.close()
    profile = load_profile("pulse_counter", {"litres_per_pulse": 10})
    volume = profile.decode_registers(rr.registers)["volume_m3"]
    model = running.rig.meters["P000001"].model
    through = model.read(NOW).volume_m3 - model.read(running.rig.config.installed).volume_m3
    assert through - 0.010 < volume <= through + 1e-9  # whole 10 l pulses since the module was wired


def test_mbus_primary_and_secondary(running: Running) -> None:
    port = running.port("mbus-1")
    first = decode_frame(mbus(port, build_req_ud2(1, fcb=True)))
    assert first["id"] == "26000001"
    assert mbus(port, build_snd_ud_select("26000002")) == b"\xe5"
    assert decode_frame(mbus(port, build_req_ud2(0xFD, fcb=True)))["id"] == "26000002"


def test_wmbus_receiver_stream(running: Running) -> None:
    """The receiver streams W000001's telegrams (77000001, mode 5). Its first telegram heard may be
    W000002's (77000002, mode 7, its own key): the meters' sends are spread over their interval."""
    parser = ReceiverStreamParser(require_fcs=True)
    received: list[ReceivedTelegram] = []
    with serial.Serial(running.port("wmbus-usb"), 57600, timeout=0.1) as s:
        deadline = time.monotonic() + 30  # its first telegram (every few hundred ms; a loaded machine may hold it)
        while time.monotonic() < deadline and not _from(received, "77000001"):
            received += parser.feed(s.read(1024))
    heard = _from(received, "77000001")
    assert heard, [telegram_address(r.telegram, crcs=False).id for r in received]
    decoded = decode_telegram(heard[0].telegram, {"77000001": KEY}, crcs=False)
    assert decoded["id"] == "77000001" and decoded["security_mode"] == 5


def _from(received: list[ReceivedTelegram], meter_id: str) -> list[ReceivedTelegram]:
    """The telegrams of ``received`` that meter ``meter_id`` sent, by their address (read without a key)."""
    return [r for r in received if telegram_address(r.telegram, crcs=False).id == meter_id]


def test_faults_injected_and_cleared_while_running(running: Running) -> None:
    port = running.port("mbus-1")
    fault(running, "MB000001", "no_reply")
    assert mbus(port, build_req_ud2(1, fcb=False), wait_s=0.5) == b""
    assert "no_reply" in next(r for r in rig_meters(running.url) if r["meter"] == "MB000001")["faults"]
    fault(running, "MB000001", "--clear")
    assert decode_frame(mbus(port, build_req_ud2(1, fcb=True)))["id"] == "26000001"

    fault(running, "M000001", "leak", "--set", "rate_lph=400")
    running.clock["now"] = NOW + timedelta(minutes=3)
    host, tcp_port = running.port("plant-tcp").split(":")
    client = ModbusTcpClient(host, port=int(tcp_port), timeout=1, retries=0)
    assert client.connect()
    try:
        reading = load_profile("smart_water_meter").decode_registers(
            client.read_input_registers(0, count=10, device_id=1).registers
        )
        assert reading["flow_m3h"] >= 0.4  # the leak's 400 l/h go through the meter on top of any use
        fault(running, "M000001", "absent")
        try:
            answered = not client.read_input_registers(0, count=8, device_id=1).isError()
        except ModbusException:
            answered = False
        assert not answered
    finally:
        client.close()
    out = fault(running, "M000001", "--clear")
    assert '"kind": "leak"' in out and '"kind": "absent"' in out
    running.clock["now"] = NOW

    refused = CliRunner().invoke(app, ["simulate", "fault", "--rig", running.url, "M000001", "main_burst"])
    assert refused.exit_code == 1 and "fault: 'main_burst' is not a fault of a smart_water_meter" in refused.output


def test_live_table_shows_every_meter_and_its_last_request(running: Running) -> None:
    assert decode_frame(mbus(running.port("mbus-1"), build_req_ud2(1, fcb=True)))["id"] == "26000001"
    deadline = time.monotonic() + 20  # W000001 sends every 0.2 s: its first telegram, on a loaded machine too
    rows = rig_meters(running.url)
    while time.monotonic() < deadline and not any(r["meter"] == "W000001" and r["last_request"] for r in rows):
        time.sleep(0.1)
        rows = rig_meters(running.url)
    assert {r["meter"] for r in rows} == set(running.rig.meters)
    polled = {r["meter"] for r in rows if r["last_request"] is not None}
    assert all(r["last_request"].endswith("Z") for r in rows if r["last_request"])  # before, +00:00
    assert {"MB000001", "W000001"} <= polled
    assert "M000002" not in polled  # nobody asked it
    console = Console(width=160, record=True)
    console.print(render(rows))
    text = console.export_text()
    for meter in running.rig.meters:
        assert meter in text


def _opens_with_parity(port: str) -> bool:
    """Whether ``port`` opened 8E1 keeps its parity: a pty refuses it (``Invalid argument``, on the
    systems this test was written on) or drops it (Linux 6.18 with glibc 2.36: pyserial's settings
    are taken, and PARENB reads back cleared)."""
    try:
        with serial.Serial(port, 2400, parity=serial.PARITY_EVEN, exclusive=True) as opened:
            return bool(termios.tcgetattr(opened.fileno())[2] & termios.PARENB)
    except termios.error:
        return False


def test_each_serial_transport_says_the_framing_its_pty_opens_with(running: Running) -> None:
    """The rig's lines are 8E1 on the wire (Modbus RTU, M-Bus), but a pty takes no parity where the C
    library reads the settings back (simulators.serial_line.pty_accepts_parity): opened 8E1, the
    gateway's port failed with ``Invalid argument``, and nothing the rig printed said to open it 8N1.
    Each serial transport's line now names the framing to open it with, and opened so it answers."""
    said = {line.split(" ", 1)[0]: line for line in describe(running.rig, running.url)}
    framings = {}
    for transport in ("rs485-1", "mbus-1", "wmbus-usb"):
        port = running.port(transport)
        at = re.search(rf"{re.escape(port)} at (\d+) 8([NEO])1\b", said[transport])
        assert at, said[transport]  # before: "rs485-1 (modbus_rtu): /dev/pts/0" and no more
        framings[transport] = (int(at.group(1)), at.group(2))
    assert framings == {
        "rs485-1": (9600, PARITY),
        "mbus-1": (2400, PARITY),
        "wmbus-usb": (57600, "N"),
    }
    if PARITY == "N":  # the wire's 8E1 is what the pty refuses: said, with the timing the line keeps
        assert said["mbus-1"].endswith("(timed as the wire's 8E1: this system's ptys take no parity)")
        assert not _opens_with_parity(running.port("mbus-1"))
    baudrate, parity = framings["mbus-1"]
    with serial.Serial(running.port("mbus-1"), baudrate, parity=parity, exclusive=True):
        pass  # opens as said
    assert decode_frame(mbus(running.port("mbus-1"), build_req_ud2(1, fcb=True)))["id"] == "26000001"
