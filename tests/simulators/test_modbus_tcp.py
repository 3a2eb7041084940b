"""Modbus TCP: the simulated meters refuse what a meter would refuse, as the RTU simulator does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from firmware_protocols.modbus import load_profile
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
                await client.read_input_registers(0, count=8, device_id=1),
                await client.read_holding_registers(0, count=8, device_id=1),
                await client.read_coils(0, count=1, device_id=1),
                await client.read_holding_registers(4096, count=11, device_id=40),
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
