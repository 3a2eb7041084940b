"""Modbus transports (TCP and RTU): one client per bus, one transaction at a time on it.

After any failed attempt the client is closed and opened afresh for the next one: a reply that
arrives after its timeout, or a partial frame still on a serial line, must not be taken as the
answer to the next request.

An RS-485 adapter that echoes the request (``echo = true``): pymodbus drops the echo before the
answer (``handle_local_echo``). Without the setting, a failed read whose answer began with the
request says so (gateway.echo).
"""

from __future__ import annotations

from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import Reading
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.echo import EchoWatch
from gateway.modbus_read import read_registers, to_reading
from gateway.profiles import ProfileBook
from gateway.transport import LineUnusable, PollError

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


class _ModbusTransport:
    protocol: Literal["modbus-tcp", "modbus-rtu"]

    def __init__(self, config: ModbusTcpBusConfig | ModbusRtuBusConfig, profiles: ProfileBook, clock: Clock = utc_now):
        self.config = config
        self.profiles = profiles
        self.clock = clock
        self.client: ModbusClient | None = None

    def _new_client(self) -> ModbusClient:
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError

    def _echo_error(self) -> str | None:
        """Why a failed read failed, if its answer began with the request (a serial line's echo)."""
        return None

    async def read(self, meter: MeterConfig) -> Reading:
        if self.client is None:
            self.client = self._new_client()
        if not self.client.connected and not await self.client.connect():
            await self.reset()
            raise LineUnusable(f"{self.config.name}: cannot open {self._where()}")
        profile = self.profiles.profile(meter)
        try:
            registers = await read_registers(self.client, meter, profile)
        except PollError as error:
            echo = self._echo_error()
            if echo is None:
                raise
            raise PollError(f"{error}; {echo}") from error
        return to_reading(
            meter, profile, registers, self.clock(), self.protocol, self.config.name, self.profiles.volume_filter(meter)
        )

    async def reset(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        await self.reset()

    def interrupt(self) -> None:
        pass  # a scan is one short attempt per unit id, each refused once the bus is closed


class ModbusTcpTransport(_ModbusTransport):
    protocol = "modbus-tcp"

    def __init__(self, config: ModbusTcpBusConfig, profiles: ProfileBook, clock: Clock = utc_now):
        super().__init__(config, profiles, clock)
        self.tcp = config

    def _new_client(self) -> ModbusClient:
        # reconnect_delay=0: no background reconnects; the scheduler decides when to try again.
        c = self.tcp
        return AsyncModbusTcpClient(c.host, port=c.port, timeout=c.timeout_s, retries=0, reconnect_delay=0)

    def _where(self) -> str:
        return self.tcp.address


class ModbusRtuTransport(_ModbusTransport):
    protocol = "modbus-rtu"

    def __init__(self, config: ModbusRtuBusConfig, profiles: ProfileBook, clock: Clock = utc_now):
        super().__init__(config, profiles, clock)
        self.rtu = config
        self.watch = EchoWatch()

    def _new_client(self) -> ModbusClient:
        c = self.rtu
        return AsyncModbusSerialClient(
            c.device,
            **c.framing,
            timeout=c.timeout_s,
            retries=0,
            reconnect_delay=0,
            handle_local_echo=c.echo,
            trace_packet=None if c.echo else self.watch,
        )

    def _echo_error(self) -> str | None:
        return None if self.rtu.echo else self.watch.error()

    def _where(self) -> str:
        return self.rtu.device
