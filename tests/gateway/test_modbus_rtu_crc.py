"""A Modbus RTU answer with a wrong CRC fails its attempt at once. pymodbus drops the frame and waits
for another, which a device never sends: each such attempt held the bus for the whole timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from pymodbus.framer import FramerRTU

from gateway.buses import attempt_once
from gateway.config import MeterConfig, ModbusRtuBusConfig
from gateway.modbus_transport import ModbusRtuTransport, garbled_answer
from gateway.profiles import ProfileBook
from gateway.transport import PollError
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import meters

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
TIMEOUT_S = 10.0  # what a bad CRC cost each attempt: far beyond a loaded machine's 9600-baud exchange


def test_a_bad_crc_fails_the_attempt_at_once_and_the_next_reads() -> None:
    plan = WireFaultPlan([WireFault(WireFaultKind.BAD_CHECKSUM, address=1, limit=1)])
    simulator = ModbusRtuSimulator(meters(1), LineSettings(baudrate=9600, parity="E"), plan).start()
    meter = MeterConfig("WM-0001", 1, "smart_water_meter")
    bus = ModbusRtuBusConfig("rtu-1", simulator.port, (meter,), parity=PARITY, timeout_s=TIMEOUT_S)
    transport = ModbusRtuTransport(bus, ProfileBook())

    async def attempts() -> tuple[str, float, float]:
        started = time.monotonic()
        try:
            await attempt_once(transport, bus, meter)
            said = "read"
        except PollError as error:
            said = str(error)
        took = time.monotonic() - started
        volume = (await attempt_once(transport, bus, meter)).volume_m3  # the line is sound again
        await transport.close()
        return said, took, volume

    try:
        said, took, volume = asyncio.run(attempts())
    finally:
        simulator.stop()
    assert said == "WM-0001: the answer's CRC is wrong (noise on the line?)"
    assert took < TIMEOUT_S / 2, took  # before: TIMEOUT_S, every time
    assert abs(volume - 22.0) < 0.01  # 10 m³ + a day at 0.5 m³/h


def _frame(unit: int, pdu: bytes) -> bytes:
    return FramerRTU(None).encode(pdu, unit, 0)  # type: ignore[arg-type]


REQUEST = _frame(1, bytes([0x04, 0x00, 0x00, 0x00, 0x02]))
ANSWER = _frame(1, bytes([0x04, 0x04, 0x00, 0x01, 0x00, 0x02]))
REFUSAL = _frame(1, bytes([0x84, 0x02]))


def _flip_last(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


def test_only_a_whole_answer_to_the_request_with_a_wrong_crc_is_garbled() -> None:
    assert garbled_answer(_flip_last(ANSWER), REQUEST)
    assert garbled_answer(_flip_last(REFUSAL), REQUEST)  # an exception answer
    assert garbled_answer(_flip_last(ANSWER) + b"\x00", REQUEST)  # with more behind it
    assert not garbled_answer(ANSWER, REQUEST)
    assert not garbled_answer(REFUSAL, REQUEST)
    assert not garbled_answer(_flip_last(ANSWER)[:-2], REQUEST)  # not all there yet
    assert not garbled_answer(_flip_last(_frame(2, ANSWER[1:-2])), REQUEST)  # another unit's
    assert not garbled_answer(REQUEST + ANSWER, REQUEST)  # an echo: gateway.echo says so
    assert not garbled_answer(_flip_last(ANSWER), b"")  # nothing asked
