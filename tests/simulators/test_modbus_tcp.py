"""Modbus TCP: the simulated meters refuse what a meter would refuse, as the RTU simulator does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from typer.testing import CliRunner

from aquami.cli import app
from firmware_protocols.modbus import load_profile
from simulators import modbus_tcp
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modelled_meter import ModelledMeter

INSTALLED = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)


def test_the_other_table_coils_and_writes_are_an_illegal_function_and_the_meter_s_table_is_read():
    """A read of the table a meter does not use, or of its coils, hit a one-register placeholder the
    refresh hook then wrote past: pymodbus logged a traceback and answered 'device failure' (04). A
    write to a holding-register meter's volume was accepted. RTU answers 01 to each."""
    household = ModelledMeter(1, load_profile("smart_water_meter"), MeterModel("H1", installed=INSTALLED, seed=1))
    inlet = ModelledMeter(
        40, load_profile("electromagnetic_flow_meter"), MeterModel("IN1", installed=INSTALLED, seed=2, initial_m3=500.0)
    )

    async def scenario() -> list[Any]:
        simulator = ModbusTcpSimulator([household, inlet], clock=lambda: NOW)
        await simulator.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=2, retries=0)
        await client.connect()
        try:
            return [
                await client.read_input_registers(0, count=10, device_id=1),
                await client.read_holding_registers(0, count=8, device_id=1),
                await client.read_coils(0, count=1, device_id=1),
                await client.read_holding_registers(4096, count=13, device_id=40),
                await client.write_register(4098, 7, device_id=40),
            ]
        finally:
            client.close()
            await simulator.stop()

    read, other_table, coils, inlet_read, write = asyncio.run(scenario())
    assert not read.isError() and household.profile.decode_registers(read.registers)["volume_m3"] > 0
    assert not inlet_read.isError()
    assert inlet.profile.decode_registers(inlet_read.registers)["volume_m3"] == inlet.meter.read(NOW).volume_m3
    for refused in (other_table, coils, write):
        assert refused.isError() and refused.exception_code == 1, refused.function_code


def test_an_absent_unit_is_answered_as_a_gateway_answers_for_nothing_behind_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pymodbus 3.16 read an absent unit as unit 0, of which there is none: a ``KeyError`` logged with
    its traceback, answered 'device failure' (04), so ``aquami gateway scan`` of the simulator listed
    every empty unit as a device that answered. Now 0Bh (gateway target device failed to respond),
    with no traceback, and the meter's own unit still reads."""
    household = ModelledMeter(1, load_profile("smart_water_meter"), MeterModel("H1", installed=INSTALLED, seed=1))

    async def scenario() -> list[Any]:
        simulator = ModbusTcpSimulator([household], clock=lambda: NOW)
        await simulator.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=2, retries=0)
        await client.connect()
        try:
            return [
                await client.read_input_registers(0, count=8, device_id=7),
                await client.read_input_registers(0, count=8, device_id=1),
            ]
        finally:
            client.close()
            await simulator.stop()

    absent, present = asyncio.run(scenario())
    assert absent.isError() and absent.exception_code == 0x0B
    assert not present.isError()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


class _Captured(Exception):
    """Stops ``aquami simulate modbus-tcp`` at the point it would start serving."""


def _served_fleet(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[ModelledMeter]:
    served: list[list[ModelledMeter]] = []

    class Capture:
        def __init__(self, fleet: list[ModelledMeter], **_: Any) -> None:
            served.append(fleet)

        async def start(self) -> None:
            raise _Captured

    monkeypatch.setattr(modbus_tcp, "ModbusTcpSimulator", Capture)
    result = CliRunner().invoke(app, ["simulate", "modbus-tcp", "--meters", "3", *args])
    assert isinstance(result.exception, _Captured), result.output
    return served[0]


def test_the_command_s_meters_are_installed_on_a_fixed_date_so_a_restart_does_not_move_a_register(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, the installation date was the start's minus 51 days: a simulator restarted an hour later
    served 16 of 20 registers lower than they had read, all 20 a day later."""
    first, restarted = _served_fleet(monkeypatch), _served_fleet(monkeypatch)
    assert [_installed(u) for u in first] == [datetime(2026, 1, 1, tzinfo=UTC)] * 3
    moment = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
    assert [u.meter.read(moment) for u in first] == [u.meter.read(moment) for u in restarted]
    other = _served_fleet(monkeypatch, "--installed", "2025-06-01T00:00:00Z")
    assert _installed(other[0]) == datetime(2025, 6, 1, tzinfo=UTC)


def _installed(unit: ModelledMeter) -> datetime:
    assert isinstance(unit.meter, MeterModel)
    return unit.meter.installed


def test_the_command_refuses_an_installation_date_it_cannot_use() -> None:
    for text, why in (("2999-01-01T00:00:00Z", "in the future"), ("yesterday", "'yesterday' is no ISO 8601 time")):
        result = CliRunner().invoke(app, ["simulate", "modbus-tcp", "--installed", text])
        assert result.exit_code == 2 and why in result.output
