"""Wire faults on Modbus TCP: the proxy passes requests and spoils the responses it was told to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from firmware_protocols.modbus import load_profile
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modelled_meter import ModelledMeter
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
#: the smart water meter's one block, as the gateway reads it (its serial number included since 2026-12-07)
(BLOCK,) = load_profile("smart_water_meter").blocks


async def _read(client: AsyncModbusTcpClient, unit: int) -> list[int] | None:
    try:
        rr = await client.read_input_registers(BLOCK.start, count=BLOCK.count, device_id=unit)
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


class Upstream:
    """A stand-in for the Modbus TCP server behind the proxy that counts its open connections."""

    def __init__(self) -> None:
        self.open: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            while await reader.read(4096):
                pass
        finally:
            self.open.discard(writer)
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _settle(condition: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return condition()


def test_a_client_that_leaves_takes_its_upstream_connection_with_it() -> None:
    """A gateway reconnecting (after every timeout) must not leave a proxy-to-server connection behind."""

    async def scenario() -> None:
        upstream = Upstream()
        proxy = ModbusTcpFaultProxy("127.0.0.1", await upstream.start(), WireFaultPlan())
        await proxy.start()
        tasks_before = len(asyncio.all_tasks())
        for _ in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await _settle(lambda: len(upstream.open) == 1)
            writer.close()
            await writer.wait_closed()
            assert await _settle(lambda: not upstream.open)
        assert await _settle(lambda: len(asyncio.all_tasks()) == tasks_before)
        await proxy.stop()
        await upstream.stop()

    asyncio.run(scenario())


def test_stop_closes_connected_clients_quietly() -> None:
    """stop() with a gateway still connected returns, closes both sides, and asyncio reports no error."""

    async def scenario() -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        upstream = Upstream()
        proxy = ModbusTcpFaultProxy("127.0.0.1", await upstream.start(), WireFaultPlan())
        await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _settle(lambda: len(upstream.open) == 1)
        await asyncio.wait_for(proxy.stop(), 5.0)
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # the gateway sees the connection close
        assert await _settle(lambda: not upstream.open)
        writer.close()
        await upstream.stop()
        await asyncio.sleep(0.1)  # asyncio reports a failed handler task from a callback
        assert errors == []

    asyncio.run(scenario())
