"""Modbus TCP transport: one connection per bus, one transaction at a time on it.

After any failed attempt the connection is closed and opened afresh for the next one: a reply that
arrives after its timeout must not be taken as the answer to the next request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusTcpClient

from aquami.contracts.reads import Reading
from gateway.config import MeterConfig, ModbusTcpBusConfig
from gateway.modbus_read import read_registers, to_reading
from gateway.profiles import ProfileBook
from gateway.transport import PollError


def utc_now() -> datetime:
    return datetime.now(UTC)


class ModbusTcpTransport:
    def __init__(self, config: ModbusTcpBusConfig, profiles: ProfileBook, clock: Callable[[], datetime] = utc_now):
        self.config = config
        self.profiles = profiles
        self.clock = clock
        self.client: AsyncModbusTcpClient | None = None

    def _new_client(self) -> AsyncModbusTcpClient:
        # reconnect_delay=0: no background reconnects; the scheduler decides when to try again.
        return AsyncModbusTcpClient(
            self.config.host, port=self.config.port, timeout=self.config.timeout_s, retries=0, reconnect_delay=0
        )

    async def read(self, meter: MeterConfig) -> Reading:
        if self.client is None:
            self.client = self._new_client()
        if not self.client.connected and not await self.client.connect():
            await self.reset()
            raise PollError(f"{self.config.name}: cannot connect to {self.config.address}")
        profile = self.profiles.profile(meter)
        registers = await read_registers(self.client, meter, profile)
        return to_reading(
            meter, profile, registers, self.clock(), "modbus-tcp", self.config.name, self.profiles.volume_filter(meter)
        )

    async def reset(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        await self.reset()
