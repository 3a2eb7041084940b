"""pymodbus's ``Repeating....`` goes as the line it stands for goes, whichever bus logged them.

pymodbus 3.16 logs a line the same as the one before it as ``Repeating....``, and appends to an
ERROR line the frames it has kept since the last one (of every bus: its history is one for the
process), building each frame's text as it builds a line's. The filter judged a ``Repeating....``
by pymodbus's last text, ``Log.last_log_text``, which by then was the last of those frames: on the
bench, a Modbus TCP bus's wrong answer (its line kept: not the gateway's to say) and its ``No
response received`` (dropped), then an RTU bus's silent meter: its ``No response received`` came as
``Repeating....`` with its frame, ``>>>>> send: 0x5 0x4 …``, judged by that frame, and reached the
log at ERROR, for every poll of the silent meter."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import pytest

from gateway.buses import make_transport
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.profiles import ProfileBook
from gateway.scan import PYMODBUS_LOGGER
from gateway.transport import PollError, Transport
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import meters

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
#: pymodbus's line for the TCP bus's answer with a transaction id never sent (the rig's bad_checksum
#: on Modbus TCP): kept, as the README says; the gateway's own line does not say it
WRONG_ANSWER = "ERROR: request ask for transaction_id=1 but got id=65534, Skipping."


async def _fail(transport: Transport, meter: MeterConfig) -> str:
    try:
        await transport.read(meter)
    except PollError as error:
        await transport.reset()
        return str(error)
    raise AssertionError(f"{meter.meter_id} read")


async def _two_buses(rounds: int) -> list[str]:
    """Each round: the TCP bus's meter whose answers carry a wrong transaction id, then the RTU bus's
    silent meter (no meter at unit 5). The gateway's own words for each failure."""
    rtu_simulator = ModbusRtuSimulator(meters(1), LineSettings(9600, parity="E")).start()
    tcp_simulator = ModbusTcpSimulator(meters(1))
    await tcp_simulator.start()
    proxy = ModbusTcpFaultProxy(
        "127.0.0.1", tcp_simulator.port, WireFaultPlan([WireFault(WireFaultKind.BAD_CHECKSUM, address=1)])
    )
    await proxy.start()
    silent, wrong = MeterConfig("WM-0005", 5), MeterConfig("T-0001", 1)
    rtu = make_transport(
        ModbusRtuBusConfig("rtu-1", rtu_simulator.port, (silent,), parity=PARITY, timeout_s=0.3, retries=0),
        ProfileBook(),
    )
    tcp = make_transport(
        ModbusTcpBusConfig("tcp-1", "127.0.0.1", proxy.port, (wrong,), timeout_s=0.3, retries=0), ProfileBook()
    )
    said = []
    try:
        for _ in range(rounds):
            said.append(await _fail(tcp, wrong))
            said.append(await _fail(rtu, silent))
    finally:
        await rtu.close()
        await tcp.close()
        await proxy.stop()
        await tcp_simulator.stop()
        rtu_simulator.stop()
    return said


def test_a_repeating_line_of_another_bus_s_dropped_line_is_dropped_however_its_frames_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        said = asyncio.run(asyncio.wait_for(_two_buses(3), 60))
    assert said[1] == "WM-0005: no answer from unit 5"  # the gateway's own line says the silent meter
    pymodbus = [r for r in caplog.records if r.name == PYMODBUS_LOGGER and r.levelno >= logging.WARNING]
    texts = [r.getMessage() for r in pymodbus]
    assert not [t for t in texts if t.startswith("Repeating")], texts  # before: one for each silent poll
    assert not [t for t in texts if t.startswith("No response received")], texts
    assert [t.splitlines()[0] for t in texts] == [WRONG_ANSWER] * 3, texts  # pymodbus's line no one else says


NO_RESPONSE = "No response received after 0 retries, continue with next request"
SILENT_UNIT_5 = bytes.fromhex("050400000008f048")  # the request pymodbus keeps as a frame


def test_a_repeating_line_goes_as_the_line_it_stands_for_whatever_frames_follow_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pymodbus's own calls, as its transaction and transport make them: a line, its frames kept, the
    same line again (``Repeating....`` with those frames)."""
    from pymodbus.logging import Log

    Log.get_last_frames()  # none kept from before
    with caplog.at_level(logging.INFO):
        Log.error(NO_RESPONSE)  # the gateway's own line says it: dropped
        Log.transport_dump(Log.SEND_DATA, SILENT_UNIT_5, b"")
        Log.error(NO_RESPONSE)  # "Repeating....", the frame appended: dropped too
        Log.error(WRONG_ANSWER)  # kept
        Log.transport_dump(Log.SEND_DATA, SILENT_UNIT_5, b"")
        Log.error(WRONG_ANSWER)  # "Repeating....", the frame appended: kept as its line is
    texts = [r.getMessage() for r in caplog.records if r.name == PYMODBUS_LOGGER]
    assert texts == [WRONG_ANSWER, "Repeating....\n>>>>> send: 0x5 0x4 0x0 0x0 0x0 0x8 0xf0 0x48"], texts
