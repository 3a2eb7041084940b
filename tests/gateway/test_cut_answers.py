"""A Modbus answer cut short on the wire is said as such (``answer cut short (7 of 25 bytes) from unit
5``), where it was ``no answer from unit 5``, the words of a meter that is not there: a technician
then checked the wiring and the address, where a cut frame is noise, baud rate or timing.

pymodbus 3.16 waits for the rest of a frame that came in part and then says what it says of silence
(gateway.cut_answers); the simulators cut the answer at a random length (``truncated``)."""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from gateway.buses import make_transport
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.cut_answers import CutWatch
from gateway.profiles import ProfileBook
from gateway.transport import NoAnswer, PollError
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import meters

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
CUT = re.compile(r"answer cut short \((\d+) of (at least )?(\d+) bytes\) from unit (\d+) \((.+)\)")
#: the smart_water_meter profile's one read, 10 input registers: the answer's length on each framing
WHOLE = {"rtu": 5 + 20, "tcp": 6 + 3 + 20}


def _rtu(unit: int, pdu: bytes) -> bytes:
    frame = bytes([unit]) + pdu
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def _tcp(transaction: int, unit: int, pdu: bytes) -> bytes:
    return transaction.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


def _exchange(framing: Literal["rtu", "tcp"], unit: int, count: int, exception: bool) -> tuple[bytes, bytes]:
    """A read request of ``count`` input registers and its whole answer (or exception 02h)."""
    request_pdu = bytes([0x04, 0, 0, 0, count])
    answer_pdu = bytes([0x84, 0x02]) if exception else bytes([0x04, 2 * count]) + bytes(range(2 * count))
    if framing == "rtu":
        return _rtu(unit, request_pdu), _rtu(unit, answer_pdu)
    return _tcp(7, unit, request_pdu), _tcp(7, unit, answer_pdu)


@given(
    framing=st.sampled_from(["rtu", "tcp"]),
    unit=st.integers(1, 247),
    count=st.integers(1, 125),
    exception=st.booleans(),
    data=st.data(),
)
def test_an_answer_cut_anywhere_is_said_with_what_came_and_what_it_said_it_would_be(
    framing: Literal["rtu", "tcp"], unit: int, count: int, exception: bool, data: st.DataObject
) -> None:
    request, answer = _exchange(framing, unit, count, exception)
    got = data.draw(st.integers(1, len(answer) - 1))
    watch = CutWatch(framing)
    watch(True, request)
    for end in range(1, got + 1):  # the receive buffer growing, as pymodbus hands it on
        watch(False, answer[:end])
    said = watch.cut_short(unit)
    assert said is not None
    match = CUT.fullmatch(said)
    assert match is not None, said
    assert int(match[1]) == got and int(match[4]) == unit
    header = 3 if framing == "rtu" else 6  # what tells the answer's length
    if got >= header or (framing == "rtu" and exception and got >= 2):
        assert match[2] is None and int(match[3]) == len(answer), said
    else:
        assert match[2] is not None and int(match[3]) <= len(answer), said


@given(framing=st.sampled_from(["rtu", "tcp"]), unit=st.integers(1, 246), count=st.integers(1, 125))
def test_silence_a_whole_answer_an_echo_and_another_unit_s_answer_are_not_cut_answers(
    framing: Literal["rtu", "tcp"], unit: int, count: int
) -> None:
    request, answer = _exchange(framing, unit, count, exception=False)
    watch = CutWatch(framing)
    watch(True, request)
    assert watch.cut_short(unit) is None  # nothing came: silence, said as before
    watch(False, answer)
    assert watch.cut_short(unit) is None  # all of it came (a wrong CRC or a late one is said elsewhere)
    if framing == "rtu":
        watch(True, request)
        watch(False, request[:5])  # the request's echo on a serial line (gateway.echo says it)
        assert watch.cut_short(unit) is None
    _, other = _exchange(framing, unit + 1, count, exception=False)
    if framing == "tcp":
        other = (8).to_bytes(2, "big") + other[2:]  # another transaction's
    watch(True, request)
    watch(False, other[:5])
    assert watch.cut_short(unit) is None
    watch(True, request)  # a new request forgets what came before it
    assert watch.cut_short(unit) is None


async def _read_each(bus: ModbusRtuBusConfig | ModbusTcpBusConfig) -> dict[str, PollError | None]:
    transport = make_transport(bus, ProfileBook())
    outcome: dict[str, PollError | None] = {}
    try:
        for meter in bus.meters:
            try:
                await transport.read(meter)
                outcome[meter.meter_id] = None
            except PollError as error:
                outcome[meter.meter_id] = error
                await transport.reset()
    finally:
        await transport.close()
    return outcome


def _cut_unit_5(seed: int) -> WireFaultPlan:
    return WireFaultPlan([WireFault(WireFaultKind.TRUNCATED, address=5)], seed=seed)


METERS = (MeterConfig("WM-0005", 5), MeterConfig("WM-0006", 6), MeterConfig("WM-0007", 7))  # no meter at 7


def _assert_said(outcome: dict[str, PollError | None], framing: Literal["rtu", "tcp"]) -> None:
    cut = outcome["WM-0005"]
    assert isinstance(cut, PollError) and not isinstance(cut, NoAnswer), repr(cut)  # a device is there
    match = CUT.fullmatch(str(cut).removeprefix("WM-0005: "))
    assert match is not None, str(cut)
    assert int(match[4]) == 5 and 1 <= int(match[1]) < WHOLE[framing]
    assert match[2] is not None or int(match[3]) == WHOLE[framing], str(cut)
    assert outcome["WM-0006"] is None  # the meter beside it reads
    silent = outcome["WM-0007"]
    # silence, as before (behind a TCP address, the simulator's exception 0Bh for a unit with no meter, said)
    assert isinstance(silent, NoAnswer) and str(silent).startswith("WM-0007: no answer from unit 7"), str(silent)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_cut_answer_on_an_rtu_line_is_said_cut_short(seed: int) -> None:
    simulator = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(9600, parity="E"), _cut_unit_5(seed))
    simulator.start()
    try:
        bus = ModbusRtuBusConfig("rtu-1", simulator.port, METERS, parity=PARITY, timeout_s=0.4, retries=0)
        outcome = asyncio.run(asyncio.wait_for(_read_each(bus), 30))
    finally:
        simulator.stop()
    _assert_said(outcome, "rtu")
    assert "noise, baud rate or timing on the line?" in str(outcome["WM-0005"])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_cut_answer_behind_a_modbus_tcp_address_is_said_cut_short(seed: int) -> None:
    async def scenario() -> dict[str, PollError | None]:
        simulator = ModbusTcpSimulator(meters(2, first_unit=5))
        await simulator.start()
        proxy = ModbusTcpFaultProxy("127.0.0.1", simulator.port, _cut_unit_5(seed))
        await proxy.start()
        try:
            bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", proxy.port, METERS, timeout_s=0.4, retries=0)
            return await _read_each(bus)
        finally:
            await proxy.stop()
            await simulator.stop()

    outcome = asyncio.run(asyncio.wait_for(scenario(), 30))
    _assert_said(outcome, "tcp")
