"""Modbus RTU slaves on a simulated serial line: many meters, one unit id each, on one pty.

pymodbus's server frames RTU with its own serial transport and timers, which would put its timing
between the wire emulator and the meters and leave no place for per-reply wire faults; so the slave
side is small and ours, with pymodbus's CRC (``FramerRTU.compute_CRC``). The register map is the
same one the TCP simulator serves: the meter's :class:`firmware_protocols.modbus.MeterProfile`.

Implemented (Modbus Application Protocol v1.1b3): 0x03 Read Holding Registers and 0x04 Read Input
Registers, answering from the table the profile names; exception 0x01 for any other function or the
other table, 0x02 for addresses outside the profile's blocks, 0x03 for a quantity outside 1..125.
Frames with a bad CRC or for another unit are ignored (silence), and broadcasts (unit 0) get no reply.

A technician's work on a running line: :meth:`ModbusRtuSlaves.exchange` puts another meter at a unit
id (a meter exchanged for a new one set to the same unit id), :meth:`ModbusRtuSlaves.swap_unit_ids`
gives two meters each other's unit id. Each meter keeps its registers (its serial number with them).
Each replaces the unit id → meter mapping in one assignment: a request finds the old mapping or the
new one, never one meter at both unit ids of a swap.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pymodbus.framer import FramerRTU

from aquami.clock import Clock, utc_now
from simulators.modbus_unit import RegisterSource, register_addresses
from simulators.serial_line import LineSettings, Reply, SerialLine
from simulators.wire_faults import WireFaultPlan

READ_HOLDING = 0x03
READ_INPUT = 0x04
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03


def crc(frame: bytes) -> bytes:
    """The RTU CRC as sent: low byte first (pymodbus returns it byte-swapped, ready for big-endian)."""
    return FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def with_crc(frame: bytes) -> bytes:
    return frame + crc(frame)


def exception_frame(unit: int, function: int, code: int) -> bytes:
    return with_crc(bytes([unit, function | 0x80, code]))


def answer(unit: RegisterSource, request: bytes, at: datetime) -> bytes:
    """The response ADU to a request ADU (CRC already checked) addressed to ``unit``."""
    unit_id, function = request[0], request[1]
    if function not in (READ_HOLDING, READ_INPUT) or len(request) != 6:
        return exception_frame(unit_id, function, ILLEGAL_FUNCTION)
    wanted = READ_INPUT if unit.profile.function == "input" else READ_HOLDING
    if function != wanted:
        return exception_frame(unit_id, function, ILLEGAL_FUNCTION)
    start, count = struct.unpack(">HH", request[2:6])
    if not 1 <= count <= 125:
        return exception_frame(unit_id, function, ILLEGAL_DATA_VALUE)
    values = dict(zip(register_addresses(unit.profile), unit.registers_at(at), strict=True))
    try:
        registers = [values[a] for a in range(start, start + count)]
    except KeyError:
        return exception_frame(unit_id, function, ILLEGAL_DATA_ADDRESS)
    pdu = bytes([unit_id, function, 2 * count]) + struct.pack(f">{count}H", *registers)
    return with_crc(pdu)


def corrupt_crc(frame: bytes) -> bytes:
    return frame[:-2] + bytes([frame[-2] ^ 0x5A, frame[-1] ^ 0xA5]) if len(frame) >= 2 else frame


@dataclass
class ModbusRtuSlaves:
    """The devices on one RTU line, found by unit id."""

    units: Sequence[RegisterSource]
    turnaround_s: float = 0.003

    def __post_init__(self) -> None:
        ids = [u.unit_id for u in self.units]
        if len(set(ids)) != len(ids):
            raise ValueError("two meters share a Modbus unit id on one line")
        if any(not 1 <= i <= 247 for i in ids):
            raise ValueError("Modbus unit ids are 1..247")
        self._by_id = {u.unit_id: u for u in self.units}

    def exchange(self, unit_id: int, new: RegisterSource) -> RegisterSource:
        """Put ``new`` at ``unit_id`` in place of the meter there (returned); ``new`` answers at that
        unit id whatever its own ``unit_id`` says (a new meter set to the old one's)."""
        if unit_id not in self._by_id:
            raise ValueError(f"no meter at unit {unit_id} to exchange")
        old = self._by_id[unit_id]
        self._by_id = {**self._by_id, unit_id: new}
        return old

    def swap_unit_ids(self, first: int, second: int) -> None:
        """The meters at ``first`` and ``second`` answer each at the other's unit id from now on."""
        missing = [u for u in (first, second) if u not in self._by_id]
        if missing:
            raise ValueError(f"no meter at unit {missing[0]} to swap")
        by_id = self._by_id
        self._by_id = {**by_id, first: by_id[second], second: by_id[first]}  # one step for a request

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        if len(frame) < 4 or crc(frame[:-2]) != frame[-2:]:
            return None
        unit = self._by_id.get(frame[0])
        if unit is None:
            return None
        return Reply(answer(unit, frame[:-2], now), frame[0], self.turnaround_s, corrupt_crc)


@dataclass
class ModbusRtuSimulator:
    """Meters on a pty at ``settings``' baud rate; the gateway opens :attr:`port`."""

    units: Sequence[RegisterSource]
    settings: LineSettings = field(default_factory=LineSettings)
    faults: WireFaultPlan | None = None
    clock: Clock = utc_now

    def __post_init__(self) -> None:
        self.slaves = ModbusRtuSlaves(self.units)
        self.line = SerialLine(self.slaves, self.settings, self.faults, self.clock)
        self.port = self.line.port

    def start(self) -> ModbusRtuSimulator:
        self.line.start()
        return self

    def stop(self) -> None:
        self.line.stop()

    def __enter__(self) -> ModbusRtuSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
