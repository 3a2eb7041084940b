"""Modbus TCP simulator: many smart meters, one unit id each, behind one or more TCP ports.

Registers are computed when a request arrives (pymodbus's ``SimDevice.action`` hook), so every read
returns the meter's state at that instant, as a real meter would.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from aquami.clock import Clock, utc_now
from aquami.pymodbus_lines import drop_pymodbus_lines, pymodbus_at_debug
from simulators.absent_units import AbsentUnits
from simulators.modbus_unit import RegisterSource, register_addresses

#: pymodbus 3.16's own line for a server that cannot listen, said beside ours (pinned <3.17)
_FAILED_TO_START = "Failed to start server "


def _said_by_us(message: str) -> bool:
    """pymodbus's ``Failed to start server [Errno 98] …`` (:meth:`ModbusTcpSimulator.start`'s error
    says the port cannot be listened on), unless its logger is at DEBUG."""
    return not pymodbus_at_debug() and message.startswith(_FAILED_TO_START)


drop_pymodbus_lines(_said_by_us)

#: The read function of each register table a profile may use (input registers: 04, holding: 03).
_READ_FUNCTION = {"input": 0x04, "holding": 0x03}


async def _refresh_registers(
    meter: RegisterSource,
    clock: Clock,
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """The meter's registers at the request's instant, for a read of its table. Any other request
    (the other table, coils, discrete inputs, a write) is refused as the RTU simulator refuses it:
    illegal function. (The hook also runs for the placeholder blocks, which hold one value.)"""
    if function_code != _READ_FUNCTION[meter.profile.function] or set_values is not None:
        return ExcCodes.ILLEGAL_FUNCTION
    values = meter.registers_at(clock())
    for register, value in zip(register_addresses(meter.profile), values, strict=True):
        current_registers[register - start_address] = value
    return None


def _device(meter: RegisterSource, clock: Clock) -> SimDevice:
    blocks = meter.profile.blocks
    first = min(block.start for block in blocks)
    last = max(block.start + block.count for block in blocks)
    registers = SimData(first, count=last - first, values=0, datatype=DataType.REGISTERS)
    simdata = [registers]
    # the tables the meter does not have span its addresses too, so that a request for them reaches
    # the hook, which refuses it as the meter does (illegal function), not as out of range
    no_bits = [SimData(first, count=last - first, values=False, datatype=DataType.BITS)]
    no_registers = [SimData(first, count=last - first, values=0, datatype=DataType.REGISTERS)]
    as_input = meter.profile.function == "input"
    blocks_by_kind = (no_bits, no_bits, no_registers if as_input else simdata, simdata if as_input else no_registers)
    return SimDevice(
        id=meter.unit_id, simdata=blocks_by_kind, action=functools.partial(_refresh_registers, meter, clock)
    )


class _Units(dict[int, object]):
    """pymodbus 3.16's SimCore keeps its devices in a dict and reads an absent unit as unit 0 (its
    ``devices[0]``): with no unit 0 that was a ``KeyError``, logged with its whole traceback, and
    answered with exception 04h (server device failure), which ``aquami gateway scan`` rightly took
    for a device there. An absent unit now raises pymodbus's own ``NoSuchIdException``, which its
    server answers with exception 0Bh (gateway target device failed to respond), as a Modbus TCP
    gateway answers for a unit with nothing behind it; the request is counted in ``absent``, said
    in one line with the others (pymodbus's ERROR for each is dropped: simulators.absent_units).
    Tied to pymodbus 3.16 (pinned <3.17)."""

    def __init__(self, devices: dict[int, object], absent: AbsentUnits):
        super().__init__(devices)
        self.absent = absent
        self._asked = 0  # the unit last looked for and not found: pymodbus then looks up unit 0

    def __contains__(self, unit_id: object) -> bool:
        found = super().__contains__(unit_id)
        if not found and isinstance(unit_id, int):
            self._asked = unit_id
        return found

    def __missing__(self, unit_id: int) -> object:
        self.absent.note(self._asked or unit_id)
        raise NoSuchIdException(f"no meter at unit {self._asked or unit_id}")


class ModbusTcpSimulator:
    """Serve ``meters`` on ``host:port`` (port 0 picks a free one; see :attr:`port` after start).

    Requests for a unit with no meter are said in one warning line per sweep, under ``name``
    (by default ``host:port``), once none has come for ``absent_quiet_s``
    (:class:`~simulators.absent_units.AbsentUnits`)."""

    def __init__(
        self,
        meters: Sequence[RegisterSource],
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = utc_now,
        *,
        name: str | None = None,
        absent_quiet_s: float = 2.0,
    ):
        unit_ids = [m.unit_id for m in meters]
        if len(set(unit_ids)) != len(unit_ids):
            raise ValueError("two meters share a Modbus unit id on one port")
        if any(not 1 <= u <= 247 for u in unit_ids):
            raise ValueError("Modbus unit ids are 1..247")
        self.meters = list(meters)
        self.host = host
        self._requested_port = port
        self.port = port
        self._server = ModbusTcpServer([_device(m, clock) for m in meters], address=(host, port))
        self.absent = AbsentUnits(name or f"{host}:{port}", quiet_s=absent_quiet_s)
        self._named = name is not None
        core = self._server.context
        core.devices = _Units(core.devices, self.absent)  # type: ignore[union-attr,arg-type]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve_forever())
        for _ in range(200):
            transport = getattr(self._server, "transport", None)
            if transport is not None:
                self.port = transport.sockets[0].getsockname()[1]
                if not self._named:
                    self.absent.where = f"{self.host}:{self.port}"
                return
            if self._task.done():  # pymodbus says "Could not start listen" (a RuntimeError)
                raise OSError(
                    f"Modbus TCP simulator cannot listen on {self.host}:{self._requested_port}: "
                    "the port is in use, or the address is not this machine's"
                ) from self._task.exception()
            await asyncio.sleep(0.01)
        raise RuntimeError("Modbus TCP simulator did not start listening")

    async def stop(self) -> None:
        self.absent.flush()
        await self._server.shutdown()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
