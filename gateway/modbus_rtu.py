"""Modbus RTU transport: one serial line, one transaction at a time, through pymodbus.

After a failed attempt the port is closed and reopened for the next, which discards any late or
partial reply still on the line instead of reading it as the next meter's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusSerialClient

from aquami.contracts.reads import Reading
from gateway.config import MeterConfig, ModbusRtuBusConfig
from gateway.modbus_read import read_registers, to_reading
from gateway.profiles import ProfileBook
from gateway.transport import PollError


def utc_now() -> datetime:
    return datetime.now(UTC)


class ModbusRtuTransport:
    def __init__(self, config: ModbusRtuBusConfig, profiles: ProfileBook, clock: Callable[[], datetime] = utc_now):
        self.config = config
        self.profiles = profiles
        self.clock = clock
        self.client: AsyncModbusSerialClient | None = None

    def _new_client(self) -> AsyncModbusSerialClient:
        c = self.config
        return AsyncModbusSerialClient(
            c.device,
            baudrate=c.baudrate,
            parity=c.parity,
            stopbits=c.stopbits,
            bytesize=c.bytesize,
            timeout=c.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    async def read(self, meter: MeterConfig) -> Reading:
        if self.client is None:
            self.client = self._new_client()
        if not self.client.connected and not await self.client.connect():
            await self.reset()
            raise PollError(f"{self.config.name}: cannot open {self.config.device}")
        profile = self.profiles.profile(meter)
        registers = await read_registers(self.client, meter, profile)
        return to_reading(
            meter, profile, registers, self.clock(), "modbus-rtu", self.config.name, self.profiles.volume_filter(meter)
        )

    async def reset(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        await self.reset()
