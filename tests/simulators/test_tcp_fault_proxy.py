"""Wire faults on Modbus TCP: the proxy passes requests and spoils the responses it was told to."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from firmware_protocols.modbus import load_profile
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modelled_meter import ModelledMeter
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)


async def _read(client: AsyncModbusTcpClient, unit: int) -> list[int] | None:
    try:
        rr = await client.read_input_registers(0, count=8, device_id=unit)
    except ModbusIOException:
        return None
    return None if rr.isError() else list(rr.registers)


def test_faults_hit_only_their_unit_and_only_as_often_as_planned() -> None:
    async def scenario() -> None:
        profile = load_profile("smart_water_meter")
        units = [
            ModelledMeter(u, profile, MeterModel(f"M{u}", installed=datetime(2026, 6, 1, tzinfo=UTC), seed=u))
            for u in (1, 2)
        ]
        sim = ModbusTcpSimulator(units, clock=lambda: NOW)
        await sim.start()
        plan = WireFaultPlan([WireFault(WireFaultKind.NO_REPLY, address=2, limit=1)])
        proxy = ModbusTcpFaultProxy("127.0.0.1", sim.port, plan)
        await proxy.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=proxy.port, timeout=2.0, retries=0)
        try:
            await client.connect()
            expected = {u.unit_id: u.registers_at(NOW) for u in units}
            assert await _read(client, 1) == expected[1]
            assert await _read(client, 2) is None  # lost once
            client.close()
            await client.connect()  # a gateway reconnects after a timeout
            assert await _read(client, 2) == expected[2]
            assert await _read(client, 1) == expected[1]
        finally:
            client.close()
            await proxy.stop()
            await sim.stop()
        assert [(a.address, a.kind) for a in plan.log] == [(2, WireFaultKind.NO_REPLY)]

    asyncio.run(scenario())
