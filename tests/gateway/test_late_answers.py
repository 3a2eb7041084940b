"""A Modbus meter that answers after the bus's timeout is told from a silent one: its late answers
count in its bus's ``late_answers`` (health status), and the first of an episode is one warning
naming the meter, its unit and the timeout to raise.

Before, a failed attempt's connection was closed at once: an answer coming after it went nowhere
(or, on an RTU line, into the next meter's request, as pymodbus's stray ``ERROR: request ask for
id=6 but got id=5, Skipping.``), and the meter's polls said ``no answer from unit 5`` as a meter
that is not there does, with nothing to tell that a longer ``timeout_s`` would read it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from aquami.contracts.status import schema_errors
from gateway.buses import make_transport
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig, parse_config_text
from gateway.late_answers import LateAnswers, LateAnswerWatch, rtu_answer, tcp_answer
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from gateway.service import Gateway
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.tcp_fault_proxy import ModbusTcpFaultProxy
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import bus_config_text, meters, running, until
from tests.services import MosquittoBroker

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"  # a pty here may take no parity
TIMEOUT_S = 0.5
# the slow meter's answer leaves this long after it would have: 0.2 s after TIMEOUT_S, and a meter
# asked at once after it gives up still answers (after that answer, on the one line) within its own
LATE_BY_S = 0.7
HINT = (
    "WM-0005 on {bus}: unit 5 answered after the bus's 0.5 s timeout, so its polls fail as 'no answer' "
    "though it answers: raise the bus's timeout_s"
)


def _slow_unit_5() -> WireFaultPlan:
    return WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=LATE_BY_S)])


def _rtu_frame(unit: int, function: int, data: bytes) -> bytes:
    body = bytes([unit, function]) + data
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


def _rtu_answer(unit: int, registers: list[int]) -> bytes:
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    return _rtu_frame(unit, 0x04, bytes([len(data)]) + data)


def _rtu_request(unit: int) -> bytes:
    return _rtu_frame(unit, 0x04, bytes([0, 0, 0, 8]))


def _tcp_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return transaction.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


def _warnings(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno >= logging.WARNING]


async def _poll_twice(
    bus: ModbusRtuBusConfig | ModbusTcpBusConfig, gap_s: float
) -> tuple[list[int | None], list[bool]]:
    """Each meter of ``bus`` polled twice in turn, ``gap_s`` after each poll: the units of the late
    answers heard, and each poll's success."""
    heard: list[int | None] = []
    transport = make_transport(bus, ProfileBook(), on_late=heard.append)

    async def taken(_: object) -> None:
        pass

    scheduler = BusScheduler(bus, transport, on_reading=taken)
    results = []
    for _ in range(2):
        for meter in bus.meters:
            results.append(await scheduler.poll(meter) is not None)
            await asyncio.sleep(gap_s)
    await transport.close()
    return heard, results


@pytest.mark.parametrize("gap_s", [0.0, 1.5], ids=["next-meter-at-once", "bus-idle-after"])
def test_a_meter_answering_after_the_timeout_on_an_rtu_line_is_heard_late_and_said_once(
    gap_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    """At once: its answer comes during the next meter's request (pymodbus's ERROR for it is dropped:
    said by the gateway); idle: it comes to the failed attempt's port, kept listening."""
    simulator = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(9600, parity="E"), _slow_unit_5()).start()
    try:
        bus = ModbusRtuBusConfig(
            "rtu-1",
            simulator.port,
            (MeterConfig("WM-0005", 5), MeterConfig("WM-0006", 6)),
            parity=PARITY,
            timeout_s=TIMEOUT_S,
            retries=0,
        )
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_twice(bus, gap_s), 30))
    finally:
        simulator.stop()
    assert results == [False, True, False, True]  # the slow meter's polls fail; the other's do not
    assert heard == [5, 5]  # each of its answers, once
    assert _warnings(caplog, "gateway.late_answers") == [HINT.format(bus="rtu-1")]  # one episode: once
    assert not [r for r in caplog.records if r.name.startswith("pymodbus") and r.levelno >= logging.WARNING]


def test_a_meter_answering_after_the_timeout_behind_a_modbus_tcp_address_is_heard_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Heard on the failed attempt's connection, kept open while the bus is idle."""

    async def scenario() -> tuple[list[int | None], list[bool]]:
        simulator = ModbusTcpSimulator(meters(2, first_unit=5))
        await simulator.start()
        proxy = ModbusTcpFaultProxy("127.0.0.1", simulator.port, _slow_unit_5())
        await proxy.start()
        try:
            meters_ = (MeterConfig("WM-0005", 5), MeterConfig("WM-0006", 6))
            bus = ModbusTcpBusConfig("tcp-1", "127.0.0.1", proxy.port, meters_, timeout_s=TIMEOUT_S, retries=0)
            return await _poll_twice(bus, 1.5)
        finally:
            await proxy.stop()
            await simulator.stop()

    with caplog.at_level(logging.INFO):
        heard, results = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert results == [False, True, False, True]
    assert heard == [5, 5]
    assert _warnings(caplog, "gateway.late_answers") == [HINT.format(bus="tcp-1")]


def test_answers_in_time_are_never_late(caplog: pytest.LogCaptureFixture) -> None:
    simulator = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(9600, parity="E")).start()
    try:
        bus = ModbusRtuBusConfig(
            "rtu-1",
            simulator.port,
            (MeterConfig("WM-0005", 5), MeterConfig("WM-0006", 6)),
            parity=PARITY,
            timeout_s=2.0,
            retries=0,
        )
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_twice(bus, 0.0), 30))
    finally:
        simulator.stop()
    assert results == [True] * 4
    assert heard == []
    assert _warnings(caplog, "gateway.late_answers") == []


def test_the_gateway_s_health_status_counts_its_buses_late_answers(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """``late_answers`` per bus, in a status the contract takes; a status without it (a gateway
    before it) is still taken."""
    simulator = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(9600, parity="E"), _slow_unit_5()).start()
    try:
        bus = {
            "name": "rtu-1",
            "protocol": "modbus-rtu",
            "device": simulator.port,
            "parity": PARITY,
            "timeout_s": TIMEOUT_S,
            "retries": 0,
            "poll_interval_s": 1.0,
        }
        wanted = [{"meter_id": "WM-0005", "unit_id": 5}, {"meter_id": "WM-0006", "unit_id": 6}]
        text = bus_config_text(mosquitto.url, tmp_path / "spool.sqlite", bus, wanted, gateway_id="gw-late")
        gateway = Gateway(parse_config_text(text))

        async def scenario() -> dict[str, object]:
            async with running(gateway):
                await until(
                    lambda: "rtu-1" in gateway.health.buses and gateway.health.buses["rtu-1"].late_answers >= 2, 30
                )
                return gateway.status()

        with caplog.at_level(logging.INFO):
            status = asyncio.run(scenario())
    finally:
        simulator.stop()
    buses = status["buses"]
    assert isinstance(buses, dict)
    assert buses["rtu-1"]["late_answers"] >= 2
    assert schema_errors(status) == []
    older = {
        **status,
        "buses": {name: {k: v for k, v in b.items() if k != "late_answers"} for name, b in buses.items()},
    }
    assert schema_errors(older) == []
    assert _warnings(caplog, "gateway.late_answers") == [HINT.format(bus="rtu-1")]


# the watch, frame by frame ------------------------------------------------------------------------
def _watch(framing: Literal["rtu", "tcp"]) -> tuple[LateAnswerWatch, list[int]]:
    heard: list[int] = []
    return LateAnswerWatch(framing, heard.append), heard


def _fed_as_it_grows(watch: LateAnswerWatch, frame: bytes, cut: int) -> None:
    """pymodbus hands the hook the whole receive buffer each time more of it arrives."""
    for end in (cut, len(frame), len(frame) + 1):
        watch(False, frame[:end] + b"\0" * max(0, end - len(frame)))


@given(
    unit=st.integers(1, 247),
    asked=st.integers(1, 247),
    registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60),
    cut=st.integers(0, 130),
)
def test_an_rtu_answer_is_late_once_when_no_request_waits_or_another_unit_was_asked(
    unit: int, asked: int, registers: list[int], cut: int
) -> None:
    answer = _rtu_answer(unit, registers)
    assert rtu_answer(answer) == (unit, len(answer))
    watch, heard = _watch("rtu")
    watch(True, _rtu_request(asked))
    watch.waiting = True
    _fed_as_it_grows(watch, answer, cut % len(answer))
    assert heard == ([] if unit == asked else [unit])  # the unit asked: its answer, not a late one
    heard.clear()
    watch(True, _rtu_request(asked))  # the next attempt, after this one gave up
    watch.waiting = False  # what comes while it is not waiting is late
    _fed_as_it_grows(watch, answer + b"\x01", cut % len(answer))
    assert heard == [unit]
    watch(True, _rtu_request(asked))
    watch.mute()  # a read abandoned as the gateway stops: its answer is not late
    watch.waiting = False
    _fed_as_it_grows(watch, answer, cut % len(answer))
    assert heard == [unit]


@given(
    unit=st.integers(1, 247), registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60), bit=st.integers(0)
)
def test_a_frame_with_a_wrong_crc_or_not_an_answer_to_a_read_is_not_taken_for_one(
    unit: int, registers: list[int], bit: int
) -> None:
    answer = bytearray(_rtu_answer(unit, registers))
    answer[-1 - bit % 2] ^= 1 << (bit % 8)
    assert rtu_answer(bytes(answer)) is None
    assert rtu_answer(_rtu_frame(unit, 0x06, bytes([0, 1, 0, 2]))) is None  # a write's answer
    watch, heard = _watch("rtu")
    watch(False, bytes(answer))
    assert heard == []


@given(
    transaction=st.integers(0, 0xFFFF),
    asked=st.integers(0, 0xFFFF),
    unit=st.integers(0, 255),
    registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60),
    exception=st.booleans(),
)
def test_a_modbus_tcp_answer_is_late_when_no_request_waits_or_it_answers_an_earlier_transaction(
    transaction: int, asked: int, unit: int, registers: list[int], exception: bool
) -> None:
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    pdu = bytes([0x84, 0x02]) if exception else bytes([0x04, len(data)]) + data
    answer = _tcp_frame(transaction, unit, pdu)
    assert tcp_answer(answer) == (transaction, unit, len(answer))
    assert tcp_answer(answer[:-1]) is None  # not whole yet
    request = bytes([0x04, 0, 0, 0, 8])
    watch, heard = _watch("tcp")
    watch(True, _tcp_frame(transaction, unit, request))  # an earlier request, the answer's
    watch(True, _tcp_frame(asked, unit, request))
    watch.waiting = True
    watch(False, answer)
    assert heard == ([] if transaction == asked else [unit])
    heard.clear()
    watch(True, _tcp_frame(asked, unit, request))  # the next attempt's request
    watch.waiting = False  # which gave up: what comes now is late, once
    watch(False, answer)
    watch(False, answer + b"\0")
    assert heard == [unit]


@given(asked=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20), transaction=st.integers(0, 0xFFFF))
def test_a_modbus_tcp_answer_with_a_transaction_id_never_sent_is_not_late(asked: list[int], transaction: int) -> None:
    """On the rig, `aquami simulate fault M000001 bad_checksum` (its answer's transaction id
    inverted, as a corrupted header) had the gateway warn `M000001 on plant-tcp: unit 1 answered
    after the bus's 2 s timeout, so its polls fail as 'no answer' though it answers: raise the bus's
    timeout_s`: the answer came in time, and no timeout cures a wrong id. An answer is late only to
    a request that was sent."""
    assume(transaction not in asked)
    answer = _tcp_frame(transaction, 1, bytes([0x04, 2, 0, 7]))
    watch, heard = _watch("tcp")
    for waiting in (True, False):
        for sent in asked:
            watch(True, _tcp_frame(sent, 1, bytes([0x04, 0, 0, 0, 1])))
        watch.waiting = waiting
        watch(False, answer)
    assert heard == []


def test_a_unit_s_late_answers_are_said_once_an_episode(caplog: pytest.LogCaptureFixture) -> None:
    """Said again once an hour has passed without one from that unit; counted every time."""
    now = [0.0]
    bus = ModbusRtuBusConfig("rtu-1", "/dev/null", (MeterConfig("WM-0005", 5),), timeout_s=1.0)
    counted: list[int | None] = []
    late = LateAnswers(bus, counted.append, monotonic=lambda: now[0])
    said: Callable[[], list[str]] = lambda: _warnings(caplog, "gateway.late_answers")  # noqa: E731
    with caplog.at_level(logging.INFO):
        for at in (0.0, 60.0, 3000.0, 6700.0, 6760.0):  # 3000 -> 6700: over an hour without one
            now[0] = at
            late.heard(5)
        now[0] = 6800.0
        late.heard(9)  # a unit no meter is configured at (a scan's): the bus alone
    hint = "unit 5 answered after the bus's 1 s timeout, so its polls fail as 'no answer' though it answers"
    assert said() == [
        f"WM-0005 on rtu-1: {hint}: raise the bus's timeout_s",
        f"WM-0005 on rtu-1: {hint}: raise the bus's timeout_s",
        "rtu-1: unit 9 answered after the bus's 1 s timeout, so its polls fail as 'no answer' though it "
        "answers: raise the bus's timeout_s",
    ]
    assert counted == [5, 5, 5, 5, 5, 9]


def test_two_rtu_buses_polled_at_once_each_hear_only_their_own_late_answers_and_frames() -> None:
    """pymodbus keeps one record of the last frames a process (``Log.frame_dump``, appended to its
    own ERROR lines), of whichever bus; the transport decides nothing from it: each client has its
    own ``trace_packet`` chain (late answers, cut answers, CRC, echo: gateway.modbus_transport).
    Two RTU buses, unit 5 slow on one only, polled at the same time, two rounds: the slow bus's
    late answers are counted on it alone, and the other bus's polls all read."""
    slow = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(9600, parity="E"), _slow_unit_5()).start()
    fast = ModbusRtuSimulator(meters(2, first_unit=5), LineSettings(9600, parity="E")).start()

    def bus(name: str, device: str) -> ModbusRtuBusConfig:
        units = (MeterConfig(f"{name}-5", 5), MeterConfig(f"{name}-6", 6))
        return ModbusRtuBusConfig(name, device, units, parity=PARITY, timeout_s=TIMEOUT_S, retries=0)

    async def both() -> tuple[tuple[list[int | None], list[bool]], tuple[list[int | None], list[bool]]]:
        return await asyncio.gather(_poll_twice(bus("slow", slow.port), 0.0), _poll_twice(bus("fast", fast.port), 0.0))

    try:
        (slow_heard, slow_read), (fast_heard, fast_read) = asyncio.run(asyncio.wait_for(both(), 60))
    finally:
        slow.stop()
        fast.stop()
    assert (fast_heard, fast_read) == ([], [True] * 4)
    assert slow_read == [False, True, False, True] and slow_heard == [5, 5]
