"""Modbus RTU over the pty: pymodbus's own RTU client reads what a real meter would give."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from firmware_protocols.modbus import load_profile
from simulators.events import Leak, ReverseFlow, Tamper
from simulators.meter_model import MeterModel
from simulators.modbus_rtu import ModbusRtuSimulator, answer, with_crc
from simulators.modelled_meter import ModelledMeter
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

INSTALLED = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE


def meters() -> list[ModelledMeter]:
    profile = load_profile("smart_water_meter")
    models = {u: MeterModel(f"M{u:06d}", installed=INSTALLED, seed=u, initial_m3=100.0 * u) for u in (1, 2, 17)}
    models[2].inject(Leak(start=INSTALLED, rate_lph=12.0))
    models[2].inject(Tamper(start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=1), registered_share=0.5))
    models[17].inject(ReverseFlow(start=NOW - timedelta(minutes=10), rate_lph=40.0))
    return [ModelledMeter(u, profile, m) for u, m in models.items()]


def client(port: str, settings: LineSettings) -> ModbusSerialClient:
    c = ModbusSerialClient(
        port, baudrate=settings.baudrate, bytesize=8, parity=PARITY, stopbits=1, timeout=1.5, retries=0
    )
    assert c.connect()
    return c


@pytest.fixture
def rtu() -> Iterator[tuple[ModbusRtuSimulator, ModbusSerialClient]]:
    sim = ModbusRtuSimulator(meters(), clock=lambda: NOW).start()
    c = client(sim.port, sim.settings)
    yield sim, c
    c.close()
    sim.stop()


def test_reads_every_unit_as_the_meter_model_says(rtu: tuple[ModbusRtuSimulator, ModbusSerialClient]) -> None:
    sim, c = rtu
    profile = load_profile("smart_water_meter")
    for unit in sim.units:
        assert isinstance(unit, ModelledMeter)
        rr = c.read_input_registers(0, count=10, device_id=unit.unit_id)
        assert not rr.isError()
        decoded = profile.decode_registers(rr.registers)
        truth = unit.meter.read(NOW)
        assert decoded["volume_m3"] == pytest.approx(truth.volume_m3, abs=1e-9)
        assert decoded["flow_m3h"] == pytest.approx(round(truth.flow_m3h, 3), abs=1e-9)
        assert decoded["reverse_volume_m3"] == pytest.approx(truth.reverse_volume_m3, abs=1e-9)
        assert set(decoded["alarms"]) == set(truth.alarms)
    leaky = profile.decode_registers(c.read_input_registers(0, count=10, device_id=2).registers)
    assert {"leak", "tamper"} <= set(leaky["alarms"])
    backwards = profile.decode_registers(c.read_input_registers(0, count=10, device_id=17).registers)
    assert "reverse_flow" in backwards["alarms"] and backwards["flow_m3h"] < 0


def test_partial_reads_exceptions_and_unknown_units(rtu: tuple[ModbusRtuSimulator, ModbusSerialClient]) -> None:
    _, c = rtu
    whole = c.read_input_registers(0, count=10, device_id=1).registers
    assert c.read_input_registers(5, count=3, device_id=1).registers == whole[5:8]
    beyond = c.read_input_registers(8, count=4, device_id=1)  # the profile's block ends at 9
    assert beyond.isError() and beyond.exception_code == 2
    wrong_table = c.read_holding_registers(0, count=8, device_id=1)
    assert wrong_table.isError() and wrong_table.exception_code == 1
    with pytest.raises(ModbusIOException):
        c.read_input_registers(0, count=8, device_id=99)  # nobody there: silence


def test_wire_faults_reach_the_client() -> None:
    plan = WireFaultPlan(
        [WireFault(WireFaultKind.BAD_CHECKSUM, address=1, limit=1), WireFault(WireFaultKind.ABSENT, address=2)]
    )
    with ModbusRtuSimulator(meters(), faults=plan, clock=lambda: NOW) as sim:
        c = client(sim.port, sim.settings)
        try:
            with pytest.raises(ModbusIOException):
                c.read_input_registers(0, count=8, device_id=1)
            assert not c.read_input_registers(0, count=8, device_id=1).isError()  # limit 1: fine again
            with pytest.raises(ModbusIOException):
                c.read_input_registers(0, count=8, device_id=2)
        finally:
            c.close()
    assert [(a.address, a.kind) for a in plan.log] == [(1, WireFaultKind.BAD_CHECKSUM), (2, WireFaultKind.ABSENT)]


def test_answer_frames() -> None:
    unit = meters()[0]
    reply = answer(unit, bytes.fromhex("010400000002"), NOW)
    assert reply[:3] == bytes([1, 4, 4]) and reply == with_crc(reply[:-2])
    assert answer(unit, bytes.fromhex("010400000000"), NOW) == with_crc(bytes([1, 0x84, 3]))
    assert answer(unit, bytes.fromhex("0106000000ff"), NOW) == with_crc(bytes([1, 0x86, 1]))
    assert with_crc(bytes.fromhex("010400000008")).hex() == "010400000008f1cc"


def test_an_inlet_meter_on_the_electromagnetic_profile() -> None:
    from simulators.live_dma import build_dma

    district = build_dma("DMA001", 5, INSTALLED, seed=2, main_bursts=1)
    profile = load_profile("electromagnetic_flow_meter")
    inlet = ModelledMeter(40, profile, district.inlet)
    with ModbusRtuSimulator([inlet], settings=LineSettings(19200, 8, "E", 1), clock=lambda: NOW) as sim:
        c = client(sim.port, sim.settings)
        try:
            rr = c.read_holding_registers(4096, count=13, device_id=40)
        finally:
            c.close()
    decoded = profile.decode_registers(rr.registers)
    assert decoded["volume_m3"] == pytest.approx(district.inlet.volume_m3(NOW), abs=1e-9)
    assert decoded["flow_m3h"] == pytest.approx(district.inlet.flow_m3h(NOW), rel=1e-6)
