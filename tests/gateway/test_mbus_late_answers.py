"""A wired M-Bus meter that answers after the bus's answer window is told from a silent one: its late
answers count in its bus's ``late_answers`` (health status), and the first of an episode is one
warning naming the meter, its address and the setting to raise (``answer_timeout_s``).

Before, a failed attempt closed the port: the late answer went nowhere (a serial port no one has
open hears nothing), and the meter's polls said ``no answer from primary address 1`` as a meter that
is not there does. A late answer that came while the port was open was dropped unheard with the
input buffer before the next request."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.mbus import build_ack, build_req_ud2, build_rsp_ud, build_snd_nke, decode_frame
from firmware_protocols.records import DataRecord
from gateway.buses import make_transport
from gateway.config import MBusBusConfig, MeterConfig
from gateway.late_answers import LateAnswers, mbus_frames
from gateway.mbus import MBusTransport
from gateway.mbus_line import LineNeverQuiet
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from gateway.transport import NoAnswer, PollError
from simulators.serial_line import LineSettings, Reply, SerialLine, pty_accepts_parity
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from tests.gateway.helpers import bus_config_text
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves, ReadsAnsweredLate, SlowReads

AQUAMI = str(Path(sys.executable).with_name("aquami"))
PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
ANSWER_S = 0.3  # the bus's answer window here (the standard's is 84 ms at 9600 baud)
LATE_BY_S = 0.6  # the slow meter's answers leave this long after they would have: after the window
HINT = (
    "SLOW-1 on mbus-1: primary address 1 answered after the bus's 0.3 s answer window, so its polls fail as "
    "'no answer' though it answers: raise the bus's answer_timeout_s (and its timeout_s, if set, to at least as much)"
)


def _bus(device: str, *meters: MeterConfig) -> MBusBusConfig:
    return MBusBusConfig("mbus-1", device, meters, baudrate=9600, parity=PARITY, answer_timeout_s=ANSWER_S, retries=0)


async def _poll_in_turn(bus: MBusBusConfig, rounds: int, gap_s: float) -> tuple[list[int | None], list[bool]]:
    """Each meter of ``bus`` polled ``rounds`` times in turn, ``gap_s`` after each poll: the addresses
    of the late answers heard, and each poll's success."""
    return await _poll(bus, [(meter, gap_s) for _ in range(rounds) for meter in bus.meters])


async def _poll(bus: MBusBusConfig, plan: list[tuple[MeterConfig, float]]) -> tuple[list[int | None], list[bool]]:
    """Each meter of ``plan`` polled in turn, its pause after it: the addresses of the late answers
    heard (None: no one meter known), and each poll's success."""
    heard: list[int | None] = []
    transport = make_transport(bus, ProfileBook(), on_late=heard.append)

    async def taken(_: object) -> None:
        pass

    scheduler = BusScheduler(bus, transport, on_reading=taken)
    results = []
    for meter, gap_s in plan:
        results.append(await scheduler.poll(meter) is not None)
        await asyncio.sleep(gap_s)
    await transport.close()
    return heard, results


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.late_answers" and r.levelno >= logging.WARNING]


def test_a_meter_answering_after_the_answer_window_is_heard_late_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its first request (SND_NKE) goes unanswered in the window; its E5h comes 0.6 s later, to the
    port kept open, and is heard before the next meter's request."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5), MBusSlave(2, "11110002", 40.0)])
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=1, delay_s=LATE_BY_S)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    try:
        bus = _bus(line.port, MeterConfig("SLOW-1", 1), MeterConfig("FAST-2", 2))
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 2, 1.0), 60))
    finally:
        line.stop()
    assert results == [False, True, False, True]  # the slow meter's polls fail; the other's do not
    assert heard == [1, 1]  # each of its answers, once
    assert _warnings(caplog) == [HINT]  # one episode: said once


def test_answers_in_the_window_are_never_late(caplog: pytest.LogCaptureFixture) -> None:
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5), MBusSlave(2, "11110002", 40.0)])
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    try:
        bus = _bus(line.port, MeterConfig("M-1", 1), MeterConfig("M-2", 2))
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 2, 0.0), 60))
    finally:
        line.stop()
    assert results == [True] * 4
    assert heard == []
    assert _warnings(caplog) == []


@dataclass
class _SlowData(MBusSlave):
    """Acknowledges SND_NKE at once, but its RSP_UD leaves ``late_by_s`` late."""

    late_by_s: float = LATE_BY_S

    def slow(self, reply: Reply | None) -> Reply | None:
        if reply is None or reply.data == build_ack():
            return reply
        return Reply(reply.data, reply.address, turnaround_s=self.late_by_s)


class _Slaves(MBusSlaves):
    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        slow = [s for s in self.slaves if isinstance(s, _SlowData) and s.requests and s.requests[-1][0] == "REQ_UD2"]
        if slow and reply is not None and reply.address == slow[0].primary:
            slow[0].requests.append(("answered", False))  # one slow answer a REQ_UD2
            return slow[0].slow(reply)
        return reply


def test_a_late_rsp_ud_taken_in_the_next_meter_s_exchange_is_counted_for_its_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The slow meter's RSP_UD comes during the next meter's request (asked at once): that request
    fails as before (the answer is not its own), and the answer is counted as the slow meter's."""
    slaves = _Slaves([_SlowData(1, "11110001", 12.5), MBusSlave(2, "11110002", 40.0)])
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    try:
        bus = _bus(line.port, MeterConfig("SLOW-1", 1), MeterConfig("FAST-2", 2))
        with caplog.at_level(logging.INFO):
            heard, _ = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 1, 0.0), 60))
    finally:
        line.stop()
    assert heard == [1]
    assert _warnings(caplog) == [HINT]


def _long_frame(address: int) -> bytes:
    return build_rsp_ud(address, "11110001", "ELS", 7, "water", 0, 0, [(DataRecord("volume", "m3", 1.5), "bcd8")])


@given(st.lists(st.sampled_from(["ack", "long"]), max_size=4), st.binary(max_size=12))
def test_the_whole_answers_heard_are_found_in_turn_and_nothing_after_noise(kinds: list[str], noise: bytes) -> None:
    frames = [build_ack() if kind == "ack" else _long_frame(len(kinds)) for kind in kinds]
    assert mbus_frames(b"".join(frames)) == frames
    found = mbus_frames(b"".join(frames) + noise)
    assert found[: len(frames)] == frames  # what follows may begin with whole answers of its own
    assert all(f == build_ack() or (f[0] == 0x68 and f[-1] == 0x16) for f in found)


def test_a_long_frame_with_a_wrong_checksum_is_no_answer() -> None:
    frame = _long_frame(1)
    spoiled = frame[:-2] + bytes([frame[-2] ^ 0xFF]) + frame[-1:]
    assert mbus_frames(spoiled) == []
    assert mbus_frames(frame[:-1]) == []  # cut short


def test_a_slow_meter_s_late_answer_in_the_next_meter_s_window_does_not_fail_that_meter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The slow meter's RSP_UD leaves 0.45 s late, in the middle of the next meter's answer window
    (0.3 s), just before that meter's own answer: in the first round it is taken in FAST-2's SND_NKE,
    in the second in FAST-2's REQ_UD2. Each is passed over as not FAST-2's (a long frame to a SND_NKE;
    a long frame from address 1 to a request to 2), counted for SLOW-1, and FAST-2's own answer read
    on in its window. Before, FAST-2's polls failed too: ``SND_NKE not acknowledged``, then ``answer
    from address 1, not 2``."""
    slaves = _Slaves([_SlowData(1, "11110001", 12.5, late_by_s=0.45), MBusSlave(2, "11110002", 40.0)])
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    try:
        bus = _bus(line.port, MeterConfig("SLOW-1", 1), MeterConfig("FAST-2", 2))
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 2, 0.0), 60))
    finally:
        line.stop()
    polls = [r.getMessage() for r in caplog.records if "FAST-2" in r.getMessage()]
    assert results == [False, True, False, True], polls  # the slow meter's polls fail; the other's do not
    assert heard == [1, 1]  # each of its late answers, counted for it
    assert _warnings(caplog) == [HINT]


def test_a_slow_meter_s_late_e5h_passed_over_in_the_next_meter_s_request_is_charged_to_the_slow_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SLOW-1 acknowledges its SND_NKE 0.45 s late, after its 0.3 s window; FAST-2 answers 0.2 s after
    each request, within its own. SLOW-1's E5h comes in FAST-2's SND_NKE window first and is taken as
    its acknowledgement (an E5h names no meter), and FAST-2's own E5h then comes in its REQ_UD2 window
    (in the second round, SLOW-1's comes there): an E5h to a REQ_UD2, passed over. Whichever E5h it
    is, the meter whose window closed without one is SLOW-1: it is charged to SLOW-1. Before, it was
    charged to FAST-2, the meter asked, and the warning told the technician to raise FAST-2's window."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5), MBusSlave(2, "11110002", 40.0)])
    faults = WireFaultPlan(
        [WireFault(WireFaultKind.SLOW, address=1, delay_s=0.36), WireFault(WireFaultKind.SLOW, address=2, delay_s=0.12)]
    )
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    try:
        bus = _bus(line.port, MeterConfig("SLOW-1", 1), MeterConfig("FAST-2", 2))
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 2, 0.0), 60))
    finally:
        line.stop()
    polls = [r.getMessage() for r in caplog.records if "FAST-2" in r.getMessage()]
    assert results == [False, True, False, True], polls
    assert heard == [1, 1]
    assert _warnings(caplog) == [HINT]


def test_a_late_e5h_two_meters_may_have_sent_is_charged_to_neither_and_said_with_both_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SLOW-1 and SLOW-3 each acknowledge their SND_NKE 0.9 s late; they are polled one after the
    other, and both E5h are heard together before SLOW-1's next poll. An E5h names no meter: each is
    counted on the bus (``on_late`` told None) and said once with both names, charged to neither.
    Before, the first was charged to SLOW-3 (the meter whose request went unanswered last, though
    SLOW-1's answer comes first), and the second was not counted at all."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5), MBusSlave(3, "11110003", 40.0)])
    faults = WireFaultPlan(
        [WireFault(WireFaultKind.SLOW, address=1, delay_s=0.9), WireFault(WireFaultKind.SLOW, address=3, delay_s=0.9)]
    )
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    slow_1, slow_3 = MeterConfig("SLOW-1", 1), MeterConfig("SLOW-3", 3)
    try:
        bus = _bus(line.port, slow_1, slow_3)
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(
                asyncio.wait_for(_poll(bus, [(slow_1, 0.0), (slow_3, 1.5), (slow_1, 0.0)]), 60)
            )
    finally:
        line.stop()
    assert results == [False, False, False]
    assert heard == [None, None]
    assert _warnings(caplog) == [
        "mbus-1: an acknowledgement (E5h) came after its request's answer window, from SLOW-1 (primary address 1) "
        "or SLOW-3 (primary address 3), whose SND_NKE or selection each went unanswered in the bus's 0.3 s answer "
        "window; an E5h names no meter, so which is not known and it is charged to none: if their polls fail as "
        "'no answer' though one answers, raise the bus's answer_timeout_s (and its timeout_s, if set, to at least "
        "as much)"
    ]


def test_a_late_e5h_no_meter_awaits_is_counted_on_the_bus_and_charged_to_none(caplog: pytest.LogCaptureFixture) -> None:
    told: list[int | None] = []
    late = LateAnswers(_bus("/dev/null", MeterConfig("M-1", 1)), told.append)
    with caplog.at_level(logging.INFO):
        late.heard_unowned([])
        late.heard_unowned([])  # the same episode: said once
    assert told == [None, None]
    assert _warnings(caplog) == [
        "mbus-1: an acknowledgement (E5h) came after its request's answer window, with no meter's SND_NKE or "
        "selection left unanswered to be its own: charged to no meter (an E5h names none; a device answering that "
        "is not configured on the bus, or a meter answering twice?)"
    ]


def _scan(line: SerialLine, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``aquami gateway scan`` of an M-Bus line (a secondary-address search) with a 0.3 s answer window."""
    config = tmp_path / "gw.toml"
    bus: dict[str, Any] = {"name": "m", "protocol": "mbus", "device": line.port, "baudrate": 9600}
    bus["parity"] = PARITY
    bus["answer_timeout_s"] = ANSWER_S
    config.write_text(bus_config_text("mqtt://127.0.0.1:1", tmp_path / "s.sqlite", bus, [], gateway_id="g"))
    return subprocess.run(
        [AQUAMI, "gateway", "scan", str(config), "--bus", "m"], capture_output=True, text=True, timeout=120
    )


def test_a_search_s_last_selection_answered_late_is_heard_and_said_with_the_cure(tmp_path: Path) -> None:
    """The line's one meter acknowledges its selection 0.45 s late, after the 0.3 s window: the
    search's first selection (FFFFFFFF, any meter) is its last, as on any line that seems empty. The
    search listens as long again before it closes the port, and says which selection was answered
    late and the cure. Before, the port was closed at once, and the scan said ``# 0 meters found``
    alone; and an E5h heard before a later selection was dropped uncounted (it names no meter)."""
    slaves = MBusSlaves([MBusSlave(0, "12340001", 1.0)])
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=0, delay_s=0.45)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    try:
        done = _scan(line, tmp_path)
    finally:
        line.stop()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# an acknowledgement (E5h) came after the 0.3 s answer window, after the selection FFFFFFFF (F: any "
        "digit) went unanswered: a meter too late to be found; scan again with a longer --timeout (and raise the "
        "bus's answer_timeout_s for the gateway to read it)",
        "# 0 meters found on m (secondary search)",
    ]


def test_a_poll_s_late_e5h_heard_as_a_search_begins_is_the_poll_s_not_the_search_s() -> None:
    """SLOW-1 acknowledges 0.45 s late, its SND_NKE and its selection alike. A poll of it goes
    unanswered; its E5h has come by the time a search begins: it is charged to SLOW-1, and the
    search's own late E5h (after its only selection) to the search. Taken at the search's first
    selection, the poll's E5h was said as a search's, "a meter too late to be found"."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5)])
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=1, delay_s=0.45)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("SLOW-1", 1)), on_late=heard.append)
        with pytest.raises(NoAnswer):
            transport.read_blocking(transport.config.meters[0])
        time.sleep(1.0)
        found = transport.search_blocking()
        transport.line.close()
    finally:
        line.stop()
    assert (found, heard, transport.late_in_search) == ([], [1, None], [("FFFFFFFF",)])


@pytest.mark.parametrize("dead_first", [False, True], ids=["slow-then-dead", "dead-then-slow"])
def test_a_dead_meter_no_longer_awaits_its_e5h_once_the_line_was_heard_silent_since(
    dead_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """SLOW-1 acknowledges 0.45 s late, after the 0.3 s window; DEAD-3 never answers. They are polled
    in turn, three rounds, a second apart: each of SLOW-1's E5h is heard before the next request.
    DEAD-3's SND_NKE went unanswered a round before, and the line has been heard silent for longer
    than the bus's timeout_s (0.6 s) since: it is not DEAD-3's, but SLOW-1's, whose window closed
    just before it. Before, DEAD-3 awaited its E5h for as long as the line stayed open, and each of
    SLOW-1's E5h after the first was said as "SLOW-1 or DEAD-3", charged to neither."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5)])  # nothing answers at primary address 3
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=1, delay_s=0.45)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    slow_1, dead_3 = MeterConfig("SLOW-1", 1), MeterConfig("DEAD-3", 3)
    try:
        bus = _bus(line.port, *((dead_3, slow_1) if dead_first else (slow_1, dead_3)))
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 3, 1.0), 60))
    finally:
        line.stop()
    assert results == [False] * 6
    # the last round's E5h comes after the port closed (slow-then-dead: before DEAD-3's last poll)
    assert heard == ([1, 1] if dead_first else [1, 1, 1])
    assert _warnings(caplog) == [HINT]


def test_a_search_s_late_read_is_said_by_the_meter_s_identification_not_as_unit_253_or_a_collision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SEC-1 (read by secondary address: unit FDh) acknowledges its selection at once, but its RSP_UD
    to the search's read comes 0.45 s late, in the next selection's window (12340000 and then
    12340002: nothing else answers them). It is passed over as no selection's answer (a selection is
    answered by an E5h) and said by the identification it carries, counted on the bus with no unit.
    Before, it was read as that selection's collision (narrowed down for nothing) and said nowhere;
    heard before a selection, it was charged to SEC-1 with its unit, 253, which the command-line
    scan said as ``# unit 253 answered …``."""
    line = SerialLine(SlowReads([MBusSlave(0, "12340001", 1.0)], 0.45), LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(
            _bus(line.port, MeterConfig("SEC-1", 253, secondary_address="12340001")), on_late=heard.append
        )
        with caplog.at_level(logging.INFO):
            found = transport.search_blocking("1234000")
        transport.line.close()
    finally:
        line.stop()
    assert heard == [None, None]  # the read of 1234000F's, then of 12340001's: no unit
    assert (found, transport.late_reads_in_search, transport.late_in_search) == ([], ["12340001"], [])
    assert _warnings(caplog) == [
        "mbus-1: the meter with secondary address 12340001, configured as SEC-1, answered after the bus's 0.3 s "
        "answer window in a secondary-address search: too late to be found: raise the bus's answer_timeout_s and "
        "search again"
    ]


def test_the_command_line_scan_names_a_meter_whose_read_came_late_by_its_identification(tmp_path: Path) -> None:
    """As above, through ``aquami gateway scan`` of the whole line (0.2 s window, reads 0.3 s late)."""
    line = SerialLine(SlowReads([MBusSlave(0, "12340001", 1.0)], 0.3), LineSettings(9600, parity="E")).start()
    config = tmp_path / "gw.toml"
    bus: dict[str, Any] = {"name": "m", "protocol": "mbus", "device": line.port, "baudrate": 9600, "parity": PARITY}
    meters = [{"meter_id": "SEC-1", "secondary_address": "12340001"}]
    config.write_text(bus_config_text("mqtt://127.0.0.1:1", tmp_path / "s.sqlite", bus, meters, gateway_id="g"))
    try:
        done = subprocess.run(
            [AQUAMI, "gateway", "scan", str(config), "--bus", "m", "--timeout", "0.2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        line.stop()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# the meter with secondary address 12340001 answered after the 0.2 s answer window, too late to be found: "
        "scan again with a longer --timeout (and raise the bus's answer_timeout_s for the gateway to read it)",
        "# 0 meters found on m (secondary search)",
    ]


def test_a_search_s_read_takes_no_other_meter_s_late_answer_as_the_selected_meter_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two slow meters side by side, 12340001 and 12340002, each acknowledging its selection at once
    and answering the search's read 0.78 s late (a 0.3 s window), the line free meanwhile: 12340001's
    answer to its own read comes in the window of 12340002's read, the selection after it. The
    search's read takes only a frame whose identification matches the selection that selected its
    meter (EN 13757-3, secondary addressing): 12340001's passes over as a late answer, said by its
    identification, and nothing is found (both are too late to be found). Before, it was taken as
    12340002's answer: a meter was "found" as 12340001 under the selection 12340002 (a technician
    configures that address, and 12340002 is never polled), and 12340001's late answer was said
    nowhere."""
    slaves = ReadsAnsweredLate([MBusSlave(0, "12340001", 1.0), MBusSlave(0, "12340002", 2.0)], 0.78)
    line = slaves.line = SerialLine(slaves, LineSettings(9600, parity="E"))
    line.start()
    try:
        transport = MBusTransport(_bus(line.port))
        with caplog.at_level(logging.INFO):
            found = transport.search_blocking("1234000")
        transport.line.close()
    finally:
        slaves.stop()
        line.stop()
    assert [meter.identification for meter in found] == []
    assert transport.late_reads_in_search == ["12340001", "12340002"]
    assert _warnings(caplog) == [
        f"mbus-1: the meter with secondary address {identification} answered after the bus's 0.3 s answer window "
        "in a secondary-address search: too late to be found: raise the bus's answer_timeout_s and search again"
        for identification in ("12340001", "12340002")
    ]


def test_a_late_read_answer_after_a_selection_s_e5h_is_no_collision() -> None:
    """12340003, 12340004 and 12340006 answer the search's read 0.78 s late (a 0.3 s window):
    12340004's answer comes in the window of the selection 12340006, after 12340006's E5h. A long
    frame is no selection's answer: it is passed over as 12340004's late read, and 12340006's E5h
    stands (its read is then too late as well). Before, E5h and frame were read as a collision: the
    selection was narrowed down for nothing, 12340006 was never read, and the search said nothing of
    it or of 12340004."""
    meters = [MBusSlave(0, identification, 1.0) for identification in ("12340003", "12340004", "12340006")]
    slaves = ReadsAnsweredLate(meters, 0.78)
    line = slaves.line = SerialLine(slaves, LineSettings(9600, parity="E"))
    line.start()
    try:
        transport = MBusTransport(_bus(line.port))
        found = transport.search_blocking("1234000")
        transport.line.close()
    finally:
        slaves.stop()
        line.stop()
    assert (found, transport.late_reads_in_search) == ([], ["12340003", "12340004", "12340006"])


def test_the_selected_meter_s_answer_followed_by_another_s_late_read_answer_is_read_not_a_collision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """12340001 answers the search's read 1.5 s late (a 0.6 s window), 12340002 at once: 12340001's
    answer to its own read comes in the window of 12340002's, after 12340002's own answer (the
    selection 12340002's window, then the read's: its answer lands mid-window, 0.3 s from either
    end). The selected meter's answer is taken, the late one passed over and said by its
    identification. Before, the two were read as a collision: the selection, at its last digit, had
    nothing more to narrow, and 12340002 was not found (a meter answering in time, lost beside a slow
    one), nor 12340001's late answer said."""
    meters = [MBusSlave(0, "12340001", 1.0), MBusSlave(0, "12340002", 2.0)]
    slaves = ReadsAnsweredLate(meters, 1.5, slow={"12340001"})
    line = slaves.line = SerialLine(slaves, LineSettings(9600, parity="E"))
    line.start()
    try:
        transport = MBusTransport(replace(_bus(line.port), answer_timeout_s=0.6))
        with caplog.at_level(logging.INFO):
            found = transport.search_blocking("1234000")
        transport.line.close()
    finally:
        slaves.stop()
        line.stop()
    assert [(meter.identification, meter.volume_m3) for meter in found] == [("12340002", 2.0)]
    assert transport.late_reads_in_search == ["12340001"]
    assert _warnings(caplog) == [
        "mbus-1: the meter with secondary address 12340001 answered after the bus's 0.6 s answer window "
        "in a secondary-address search: too late to be found: raise the bus's answer_timeout_s and search again"
    ]


_LATE = build_rsp_ud(0xFD, "12340001", "ELS", 7, "water", 0, 0, [(DataRecord("volume", "m3", 1.0), "bcd8")])
_OWN = build_rsp_ud(0xFD, "12340002", "ELS", 7, "water", 0, 0, [(DataRecord("volume", "m3", 2.0), "bcd8")])


@dataclass
class _AnswerThenMore:
    """Answers any request with ``_OWN`` at once and, 0.2 s after it ends, ``more`` (within a 1.0 s
    window, whatever a loaded machine's scheduling delays)."""

    more: bytes

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        char_s = LineSettings(9600, parity="E").char_time_s
        own = tuple(i * char_s for i in range(len(_OWN)))
        after = tuple(len(_OWN) * char_s + 0.2 + i * char_s for i in range(len(self.more)))
        return Reply(_OWN + self.more, char_starts_s=own + after)


@pytest.mark.parametrize(
    ("more", "taken"),
    [
        (_LATE, True),  # a whole frame passed over as another's: the answer stands
        (_LATE + _LATE, True),  # twice (a line's late answers are few; MOST_PASSED_OVER bounds them)
        (bytes([0xC5, 0xFD]), False),  # garbage: two slaves at once
        (_LATE[:-3] + bytes([0xE5, 0xE5, 0xE5]), False),  # a frame that garbles: not whole
        (_LATE[:8], False),  # cut short
        (_OWN, False),  # a whole frame not passed over: a second answer
        (bytes([0xE5]), True),  # a lone E5h after an RSP_UD to a REQ_UD2: a late acknowledgement, heard
        (bytes([0xE5, 0xC5]), False),  # an E5h with a byte behind it: no lone one
        (_LATE + bytes([0xC5, 0xFD]), False),  # a late answer, then garbage
    ],
    ids=[
        "late",
        "late-twice",
        "garbage",
        "garbled-frame",
        "cut-short",
        "second-own",
        "lone-e5h",
        "e5h-then-garbage",
        "late-then-garbage",
    ],
)
def test_after_the_answer_taken_only_whole_frames_passed_over_are_no_collision(more: bytes, taken: bool) -> None:
    """The exchange of a search (``whole_window``) after a whole first answer: what follows within
    the window is a collision unless it makes whole frames that ``not_the_answer`` passes over (here
    12340001's, as the search's read passes over the answer of a meter its selection does not match),
    or is a lone E5h (a late acknowledgement: the request is a REQ_UD2, whose answer is an RSP_UD),
    counted as a late answer. Before 2026-12-07 the lone E5h was a collision too."""
    passed_over: list[bytes] = []

    def not_the_answer(frame: bytes) -> bool:
        if frame == _LATE:
            passed_over.append(frame)
            return True
        return False

    line = SerialLine(_AnswerThenMore(more), LineSettings(9600, parity="E")).start()
    try:
        told: list[int | None] = []
        transport = MBusTransport(replace(_bus(line.port), answer_timeout_s=1.0), on_late=told.append)
        request = build_req_ud2(0xFD, fcb=True)
        if taken:
            assert transport.line.exchange(request, whole_window=True, not_the_answer=not_the_answer) == _OWN
            assert passed_over == [_LATE] * more.count(_LATE)
            assert told == ([None] if more == bytes([0xE5]) else [])
        else:
            with pytest.raises(PollError, match="collision"):
                transport.line.exchange(request, whole_window=True, not_the_answer=not_the_answer)
        transport.line.close()
    finally:
        line.stop()


def test_a_late_frame_still_arriving_when_the_next_meter_is_asked_is_read_whole_and_spoils_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """2400 baud, the standard's 0.19 s answer window: SLOW-1 sends its 200-byte RSP_UD (0.92 s on
    the wire) 0.3 s after its REQ_UD2, after the window; FAST-2 is polled 0.5 s after SLOW-1's poll
    failed, half-way through that frame. The line is read on until it is quiet before FAST-2's
    request goes: the frame is heard whole, counted for SLOW-1, and FAST-2's poll succeeds. Before,
    the frame's head was handed over as a fragment (not counted) and its tail read as FAST-2's
    answer: ``FAST-2: garbled answer``."""
    slow = MBusSlave(1, "11110001", 500.0, history=24)
    slaves = ReadsAnsweredLate([slow, MBusSlave(2, "11110002", 40.0)], 0.3, slow={"11110001"})
    line = slaves.line = SerialLine(slaves, LineSettings(2400, parity="E"))
    line.start()
    slow_1, fast_2 = MeterConfig("SLOW-1", 1), MeterConfig("FAST-2", 2)
    try:
        bus = MBusBusConfig("mbus-1", line.port, (slow_1, fast_2), baudrate=2400, parity=PARITY, retries=0)
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll(bus, [(slow_1, 0.5), (fast_2, 0.0)]), 60))
    finally:
        slaves.stop()
        line.stop()
    polls = [r.getMessage() for r in caplog.records if "FAST-2" in r.getMessage()]
    assert results == [False, True], polls
    assert heard == [1]  # the whole frame: it names its sender
    assert _warnings(caplog) == [HINT.replace("0.3 s", "0.1875 s")]


class _Babbling:
    """A line that never goes quiet: a device sends 30 bytes of zeros every 20 ms (30 ms on the wire
    at 9600 baud), and counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self.line = SerialLine(self, LineSettings(9600, parity="E"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._babble, daemon=True)

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        self.requests += 1
        return None

    def _babble(self) -> None:
        while not self._stop.wait(0.02):
            self.line.push(bytes(30))

    def start(self) -> None:
        self.line.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.line.stop()


def test_no_request_is_sent_into_a_line_that_never_goes_quiet() -> None:
    """Bytes waiting before a request, and more behind them without a pause: the line is read for at
    most the drain's bound (0.75 s at 9600 baud with a 0.3 s window), then the exchange fails as
    ``line never quiet``, its request not sent. Before, the request was sent into the babble (which
    garbles it on a real bus), and the exchange failed the same way only after it."""
    babbling = _Babbling()
    babbling.start()
    try:
        transport = MBusTransport(_bus(babbling.line.port, MeterConfig("M-1", 1)))
        transport.line.open()
        time.sleep(0.2)  # the babble comes in
        started = time.monotonic()
        with pytest.raises(LineNeverQuiet, match="line never quiet"):
            transport.line.exchange(build_req_ud2(1, fcb=True))
        took = time.monotonic() - started
        transport.line.close()
        time.sleep(0.2)  # a request sent would have been handled by now
    finally:
        babbling.stop()
    assert babbling.requests == 0
    assert took < transport.line.drain_limit_s + 0.5


@pytest.mark.parametrize("late_by_s", [0.5, 0.8], ids=["in-a-selection-s-window", "as-the-search-listens"])
def test_a_poll_s_late_rsp_ud_heard_in_a_search_is_the_poll_s_not_the_search_s(
    late_by_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    """SLOW-1's RSP_UD comes 0.5 s (0.8 s) after its poll's REQ_UD2, after the 0.3 s window; a search
    of 2222000F (which selects no meter) begins at once: the frame comes in the selection's window
    (as the search listens after it). The search never selected SLOW-1: the frame is its poll's late
    answer, counted for SLOW-1 with its address and said with the setting that cures its polls.
    Before, it was said as the search's: "the meter with secondary address 11110001, configured as
    SLOW-1, answered after the bus's 0.3 s answer window in a secondary-address search: too late to
    be found", counted with no unit."""
    slaves = ReadsAnsweredLate([MBusSlave(1, "11110001", 12.5)], late_by_s)
    line = slaves.line = SerialLine(slaves, LineSettings(9600, parity="E"))
    line.start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("SLOW-1", 1)), on_late=heard.append)
        with caplog.at_level(logging.INFO):
            with pytest.raises(NoAnswer):
                transport.read_blocking(transport.config.meters[0])
            found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        slaves.stop()
        line.stop()
    assert (found, heard, transport.late_reads_in_search) == ([], [1], [])
    assert _warnings(caplog) == [HINT]


def test_a_slow_meter_s_late_answers_to_a_poll_and_to_the_search_s_read_are_each_said_as_their_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SEC-1 (read by secondary address 12340001) answers every read 0.45 s late, after the 0.3 s
    window. Its poll goes unanswered; a search of 1234000F selects it and reads it, unanswered too
    (and again at 12340001, narrowed down); three late frames from it then come. A meter answers its
    requests in turn: the first is the poll's (counted for SEC-1, said with its poll's cure), the
    others the search's (said by its identification, too late to be found: one episode)."""
    slaves = ReadsAnsweredLate([MBusSlave(0, "12340001", 1.0)], 0.45)
    line = slaves.line = SerialLine(slaves, LineSettings(9600, parity="E"))
    line.start()
    heard: list[int | None] = []
    sec_1 = MeterConfig("SEC-1", 253, secondary_address="12340001")
    try:
        transport = MBusTransport(_bus(line.port, sec_1), on_late=heard.append)
        with caplog.at_level(logging.INFO):
            with pytest.raises(NoAnswer):
                transport.read_blocking(sec_1)
            found = transport.search_blocking("1234000")
            transport.line.listen(1.0)  # what is still to come, as the next request would hear it
        transport.line.close()
    finally:
        slaves.stop()
        line.stop()
    assert (found, transport.late_reads_in_search) == ([], ["12340001"])
    assert heard == [253, None, None]
    assert _warnings(caplog) == [
        "SEC-1 on mbus-1: secondary address 12340001 answered after the bus's 0.3 s answer window, so its polls "
        "fail as 'no answer' though it answers: raise the bus's answer_timeout_s (and its timeout_s, if set, to at "
        "least as much)",
        "mbus-1: the meter with secondary address 12340001, configured as SEC-1, answered after the bus's 0.3 s "
        "answer window in a secondary-address search: too late to be found: raise the bus's answer_timeout_s and "
        "search again",
    ]


_SLOW_1_LATE = build_rsp_ud(1, "11110001", "ELS", 7, "water", 0, 0, [(DataRecord("volume", "m3", 12.5), "bcd8")])


class _AcknowledgedThenMore(MBusSlaves):
    """FAST-2 (primary address 2) on a line where every E5h it sends has ``behind`` right after it,
    ``gap_chars`` characters' time after the E5h ends (within the three that tell a collision): a
    slow neighbour's late answer (or garbage) that begins as FAST-2 acknowledges."""

    def __init__(self, behind: bytes, gap_chars: int):
        super().__init__([MBusSlave(2, "11110002", 40.0)])
        self.behind = behind
        self.gap_chars = gap_chars

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        if reply is None or reply.data != build_ack():
            return reply
        char_s = LineSettings(9600, parity="E").char_time_s
        behind = tuple((1 + self.gap_chars + i) * char_s for i in range(len(self.behind)))
        return Reply(reply.data + self.behind, reply.address, char_starts_s=(0.0, *behind))


@pytest.mark.parametrize("gap_chars", [0, 1, 2])
def test_an_e5h_with_a_slow_meter_s_late_frame_right_behind_it_is_the_answer_not_a_collision(
    gap_chars: int, caplog: pytest.LogCaptureFixture
) -> None:
    """FAST-2 acknowledges its SND_NKE at once, and SLOW-1's late RSP_UD (to a poll whose window
    closed) begins 0 to 2 characters after that E5h. An E5h is what a SND_NKE asks for, and what
    follows is a whole long frame, no second E5h: FAST-2's E5h is its answer (its poll succeeds),
    and the frame SLOW-1's late answer, counted for it. Before, any byte within three characters of
    an E5h was a collision: FAST-2's poll failed (``SND_NKE not acknowledged``: a collision), and
    SLOW-1's frame was drained uncounted."""
    line = SerialLine(_AcknowledgedThenMore(_SLOW_1_LATE, gap_chars), LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    fast_2 = MeterConfig("FAST-2", 2)
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("SLOW-1", 1), fast_2), on_late=heard.append)
        with caplog.at_level(logging.INFO):
            reading = transport.read_blocking(fast_2)
        transport.line.close()
    finally:
        line.stop()
    assert (reading.meter_id, reading.volume_m3, heard) == ("FAST-2", 40.0, [1])
    assert _warnings(caplog) == [HINT]


@pytest.mark.parametrize(
    "behind",
    [
        bytes([0xE5]),  # a second E5h: two meters acknowledging
        bytes([0xC5, 0xFD]),  # two answers at once: garbage
        _SLOW_1_LATE[:4] + bytes([0xC5, 0xFD]),  # a long frame's head, then garbage: no whole frame
        _SLOW_1_LATE[:-2] + bytes([_SLOW_1_LATE[-2] ^ 0xFF, 0x16]),  # a long frame, its checksum wrong
    ],
    ids=["e5h", "garbage", "head-then-garbage", "bad-checksum"],
)
def test_an_e5h_with_bytes_behind_it_that_make_no_whole_long_frame_is_still_a_collision(behind: bytes) -> None:
    line = SerialLine(_AcknowledgedThenMore(behind, 1), LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("FAST-2", 2)), on_late=heard.append)
        with pytest.raises(PollError, match="collision"):
            transport.line.exchange(build_snd_nke(2))
        transport.line.close()
    finally:
        line.stop()
    assert heard == []


@dataclass
class _E5hThenFrame:
    """Answers any request with an E5h and, a character's time after it, SLOW-1's late RSP_UD."""

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        char_s = LineSettings(9600, parity="E").char_time_s
        behind = tuple((2 + i) * char_s for i in range(len(_SLOW_1_LATE)))
        return Reply(build_ack() + _SLOW_1_LATE, char_starts_s=(0.0, *behind))


def test_an_e5h_to_a_req_ud2_with_a_long_frame_behind_it_is_still_a_collision() -> None:
    """A REQ_UD2 asks for an RSP_UD, not an E5h: an E5h with a long frame right behind it is not
    told from two answers at once (the frame may be the meter's own), and stays a collision."""
    line = SerialLine(_E5hThenFrame(), LineSettings(9600, parity="E")).start()
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("FAST-2", 2)))
        with pytest.raises(PollError, match="collision"):
            transport.line.exchange(build_req_ud2(2, fcb=True))
        transport.line.close()
    finally:
        line.stop()


def test_a_poll_left_unanswered_long_before_a_search_does_not_take_the_search_s_late_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SEC-1 (read by secondary address 12340001) says nothing to its poll's REQ_UD2 (that answer
    never comes), and answers the search's reads 0.45 s late, after the 0.3 s window. The search
    begins a second after the poll, longer than the bus's timeout_s (0.6 s) after its window closed,
    the line heard silent meanwhile: the poll no longer awaits its answer, and SEC-1's late frames
    are the search's read's, said by its identification (too late to be found: one episode). Before,
    a poll's REQ_UD2 left unanswered had its meter await its RSP_UD for as long as the port stayed
    open: the first of them was said as that poll's answer (``SEC-1 … so its polls fail as 'no
    answer' though it answers``), counted for unit 253, and the search said nothing of the meter's
    read until its second late frame."""
    slaves = ReadsAnsweredLate([MBusSlave(0, "12340001", 1.0, drop_once_at=0)], 0.45)
    line = slaves.line = SerialLine(slaves, LineSettings(9600, parity="E"))
    line.start()
    heard: list[int | None] = []
    sec_1 = MeterConfig("SEC-1", 253, secondary_address="12340001")
    try:
        transport = MBusTransport(_bus(line.port, sec_1), on_late=heard.append)
        with caplog.at_level(logging.INFO):
            with pytest.raises(NoAnswer):
                transport.read_blocking(sec_1)
            time.sleep(1.0)
            found = transport.search_blocking("1234000")
            transport.line.listen(1.0)  # what is still to come, as the next request would hear it
        transport.line.close()
    finally:
        slaves.stop()
        line.stop()
    assert (found, transport.late_reads_in_search) == ([], ["12340001"])
    assert heard == [None, None]
    assert _warnings(caplog) == [
        "mbus-1: the meter with secondary address 12340001, configured as SEC-1, answered after the bus's 0.3 s "
        "answer window in a secondary-address search: too late to be found: raise the bus's answer_timeout_s and "
        "search again"
    ]


def test_a_poll_s_late_e5h_heard_as_a_search_listens_is_said_as_the_poll_s_or_the_search_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SLOW-1 acknowledges its SND_NKE 0.78 s late, after the 0.3 s window. Its poll goes unanswered,
    and a search of 2222000F (which selects no meter) begins at once: SLOW-1's E5h comes as the
    search listens after that selection, 0.47 s after SLOW-1's window closed (within the bus's
    timeout_s, 0.6 s). An E5h names no meter, and it may be the poll's or the selection's: it is
    counted on the bus, charged to none, and said with both. Before, the search forgot the polls'
    E5h awaited as it began, and it was said as the search's alone, "a meter answering too late to
    be found: … search again": the technician searched again, and SLOW-1's polls went on failing."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5)])
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=1, delay_s=0.78)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("SLOW-1", 1)), on_late=heard.append)
        with caplog.at_level(logging.INFO):
            with pytest.raises(NoAnswer):
                transport.read_blocking(transport.config.meters[0])
            found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        line.stop()
    assert (found, heard, transport.late_in_search) == ([], [None], [("2222000F",)])
    assert _warnings(caplog) == [
        "mbus-1: an acknowledgement (E5h) came after the bus's 0.3 s answer window in a secondary-address search, "
        "after the selection 2222000F (F: any digit) went unanswered, or from SLOW-1 (primary address 1), whose "
        "poll's SND_NKE or selection went unanswered just before; an E5h names no meter, so which is not known and "
        "it is charged to none: raise the bus's answer_timeout_s (and its timeout_s, if set, to at least as much), "
        "and search again"
    ]


@pytest.mark.parametrize("pause_s", [0.0, 1.0], ids=["poll-just-before", "poll-long-before"])
def test_a_search_s_late_e5h_is_said_with_a_silent_poll_only_within_the_bus_s_timeout(
    pause_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    """DEAD-3 never answers; the meter 22220001 acknowledges its selection 0.45 s late, after the
    0.3 s window, and its E5h comes as the search of 2222000F listens after that selection. DEAD-3's
    SND_NKE, left unanswered just before the search, may have been answered by it too: it is said
    with both, charged to none. A second before (longer than the bus's timeout_s, 0.6 s, the line
    heard silent since), DEAD-3 no longer awaits an E5h: it is said as the search's alone."""
    slaves = MBusSlaves([MBusSlave(5, "22220001", 1.0)])  # nothing answers at primary address 3
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.45)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    dead_3 = MeterConfig("DEAD-3", 3)
    try:
        transport = MBusTransport(_bus(line.port, dead_3))
        with caplog.at_level(logging.INFO):
            with pytest.raises(NoAnswer):
                transport.read_blocking(dead_3)
            time.sleep(pause_s)
            found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        line.stop()
    came = "mbus-1: an acknowledgement (E5h) came after the bus's 0.3 s answer window in a secondary-address search"
    selection = "after the selection 2222000F (F: any digit) went unanswered"
    said = (
        f"{came}, {selection}, or from DEAD-3 (primary address 3), whose poll's SND_NKE or selection went "
        "unanswered just before; an E5h names no meter, so which is not known and it is charged to none: raise "
        "the bus's answer_timeout_s (and its timeout_s, if set, to at least as much), and search again"
        if pause_s == 0.0
        else f"{came}, {selection}: a meter answering too late to be found: raise the bus's answer_timeout_s and "
        "search again"
    )
    assert (found, transport.late_in_search) == ([], [("2222000F",)])
    assert _warnings(caplog) == [said]


def test_a_selection_s_e5h_with_a_late_frame_right_behind_it_holds_its_meter_which_is_found() -> None:
    """In a search of 2222000F: the meter 22220002 acknowledges its selection at once, and SLOW-1's
    late RSP_UD begins a character after that E5h. The E5h is the selection's answer, the frame a
    late one (heard, counted for SLOW-1, a configured meter the search never selected), and 22220002
    is read and found. Before, E5h and frame were a collision: the selection was narrowed down, the
    same happened at 22220002, and the meter was never found."""
    slaves = _AcknowledgedThenMore(_SLOW_1_LATE, 1)
    slaves.slaves = [MBusSlave(2, "22220002", 40.0)]
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("SLOW-1", 1)), on_late=heard.append)
        found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        line.stop()
    assert [(meter.identification, meter.volume_m3) for meter in found] == [("22220002", 40.0)]
    assert heard == [1]
    assert transport.late_reads_in_search == []


def test_an_e5h_heard_after_a_search_s_final_listen_is_bounded_from_the_listen_s_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DEAD-3 never answers; the meter 22220001 acknowledges its selection 0.8 s late, after the
    0.3 s window and after the search's final listen (as long again). DEAD-3's SND_NKE went unanswered
    just before the search; the bus's timeout_s is 0.45 s. The E5h comes after the listen, and the
    line was heard silent until the listen's end, more than 0.45 s after DEAD-3's window closed: it is
    not DEAD-3's (:meth:`MBusTransport._still_awaiting`), and is charged to no meter. Bounded from the
    last selection's end instead (0.3 s after DEAD-3's window), it was charged to DEAD-3, a dead meter,
    and the warning sent the technician to raise DEAD-3's answer window."""
    slaves = MBusSlaves([MBusSlave(5, "22220001", 1.0)])  # nothing answers at primary address 3
    faults = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=5, delay_s=0.8)])
    line = SerialLine(slaves, LineSettings(9600, parity="E"), faults).start()
    dead_3 = MeterConfig("DEAD-3", 3)
    heard: list[int | None] = []
    try:
        bus = replace(_bus(line.port, dead_3), timeout_s=0.45)
        transport = MBusTransport(bus, on_late=heard.append)
        with caplog.at_level(logging.INFO):
            with pytest.raises(NoAnswer):
                transport.read_blocking(dead_3)
            found = transport.search_blocking("2222000")
            transport.line.listen(1.0)  # what comes after the search, as the next request would hear it
        transport.line.close()
    finally:
        line.stop()
    assert (found, transport.late_in_search, heard) == ([], [], [None])
    assert _warnings(caplog) == [
        "mbus-1: an acknowledgement (E5h) came after its request's answer window, with no meter's SND_NKE or "
        "selection left unanswered to be its own: charged to no meter (an E5h names none; a device answering "
        "that is not configured on the bus, or a meter answering twice?)"
    ]


class AckedLate(MBusSlaves):
    """The SND_NKE of the meters at the primary addresses ``slow`` acknowledged ``late_by_s`` after it,
    the line free meanwhile (as a slow meter's is: the other meters answer in between); every other
    answer at once. Set :attr:`line` before the master talks."""

    def __init__(self, slaves: list[MBusSlave], slow: set[int], late_by_s: float):
        super().__init__(slaves)
        self.slow, self.late_by_s = slow, late_by_s
        self.line: SerialLine | None = None

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        if reply is None or reply.data != build_ack() or frame[:2] != b"\x10\x40" or frame[2] not in self.slow:
            return reply
        assert self.line is not None, "AckedLate.line is not set"
        timer = threading.Timer(self.late_by_s, self.line.push, (reply.data, reply.address))
        timer.daemon = True
        timer.start()
        return None


def test_a_poll_s_late_e5h_right_after_the_search_s_read_answer_is_no_collision() -> None:
    """SLOW-1 acknowledges its SND_NKE 0.82 s late, after the 0.3 s window; its poll goes unanswered,
    and a search of 2222000F begins at once. The meter 22220001 acknowledges the selection and answers
    the search's read at once, and SLOW-1's E5h comes right after that RSP_UD, within the read's
    window: a lone E5h (a quiet line behind it) after a whole RSP_UD is no second answer to a REQ_UD2
    but a late acknowledgement, charged to SLOW-1 (the one meter awaiting one), and 22220001 is found
    at the selection it answered. Before, it was a collision: the E5h drained uncounted and the
    selection narrowed down for nothing (ten selections more, nine of them silent)."""
    slaves = AckedLate([MBusSlave(1, "11110001", 12.5), MBusSlave(5, "22220001", 1.0)], {1}, 0.82)
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    slaves.line = line
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port, MeterConfig("SLOW-1", 1)), on_late=heard.append)
        with pytest.raises(NoAnswer):
            transport.read_blocking(transport.config.meters[0])
        frames_before = slaves.frames
        found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        line.stop()
    assert ([f.identification for f in found], heard) == (["22220001"], [1])
    assert slaves.frames - frames_before == 2  # the selection and its read: none narrowed down
    assert (transport.late_in_search, transport.late_reads_in_search) == ([], [])


class TrailingRead(MBusSlaves):
    """Every RSP_UD followed, ``gap_s`` after its last byte, by ``trailing``: what a second slave (or
    noise) puts on the line right after the search's read is answered (9600 baud 8E1: 11 bits a
    character)."""

    def __init__(self, slaves: list[MBusSlave], trailing: bytes, gap_s: float = 0.03):
        super().__init__(slaves)
        self.trailing, self.gap_s = trailing, gap_s

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        if reply is None or reply.data[:1] != b"\x68":
            return reply
        char_s = 11 / 9600
        starts = [i * char_s for i in range(len(reply.data))]
        behind = starts[-1] + char_s + self.gap_s
        starts += [behind + i * char_s for i in range(len(self.trailing))]
        return Reply(reply.data + self.trailing, reply.address, char_starts_s=tuple(starts))


@pytest.mark.parametrize(
    ("trailing", "found_ids"),
    [
        (b"\xe5", ["22220001"]),  # a lone E5h: a late acknowledgement, the RSP_UD taken
        (b"\xe5\x55", []),  # an E5h with a byte behind it: a collision, as before
        (b"\xe5\xe5", []),  # two E5h: a collision
        (b"\x55", []),  # noise: a collision
    ],
    ids=["lone-e5h", "e5h-and-noise", "two-e5h", "noise"],
)
def test_only_a_lone_e5h_after_the_search_s_read_answer_is_a_late_acknowledgement(
    trailing: bytes, found_ids: list[str]
) -> None:
    """The meter 22220001 answers the search's read with a whole RSP_UD, then ``trailing`` comes
    30 ms later, every time. A lone E5h is a late acknowledgement (counted, said as the search's, the
    meter found); anything else behind the RSP_UD stays a collision: narrowed down to the last digit,
    where it collides again, and the meter is not found. Before, the lone E5h was a collision too."""
    line = SerialLine(TrailingRead([MBusSlave(5, "22220001", 1.0)], trailing), LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port), on_late=heard.append)
        found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        line.stop()
    assert [f.identification for f in found] == found_ids
    assert heard == ([None] if found_ids else [])


def test_a_lone_e5h_after_the_search_s_read_answer_is_said_with_the_selection_that_read_followed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The meter 22220001 acknowledges the selection 2222000F and answers the search's read in time,
    and a lone E5h comes 30 ms after its RSP_UD, no poll's meter awaiting one: a late acknowledgement
    (a second meter that selection selects, answering after the window). The search's selections left
    unanswered were cleared as 2222000F was acknowledged, so it is said with the selection it likeliest
    answers, 2222000F, marked as the one answered. Before, it was kept as ``()`` and said "after no
    selection left unanswered since the search's last answer": nothing to look at."""
    line = SerialLine(TrailingRead([MBusSlave(5, "22220001", 1.0)], b"\xe5"), LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    try:
        transport = MBusTransport(_bus(line.port), on_late=heard.append)
        with caplog.at_level(logging.WARNING, logger="gateway"):
            found = transport.search_blocking("2222000")
        transport.line.close()
    finally:
        line.stop()
    assert ([f.identification for f in found], heard) == (["22220001"], [None])
    assert (transport.late_in_search, transport.late_in_search_answered) == ([("2222000F",)], [True])
    assert _warnings(caplog) == [
        "mbus-1: an acknowledgement (E5h) came after the bus's 0.3 s answer window in a secondary-address search, "
        "after the selection 2222000F (F: any digit) was answered in time, none left unanswered since (a second "
        "meter it selects, acknowledging late?): a meter answering too late to be found: raise the bus's "
        "answer_timeout_s and search again"
    ]


def test_the_command_line_scan_says_a_lone_e5h_after_a_read_answer_with_the_selection_answered(
    tmp_path: Path,
) -> None:
    """``aquami gateway scan`` of a line whose one meter's RSP_UD has a lone E5h 30 ms behind it: the
    meter is found at the search's first selection, FFFFFFFF, and the E5h is said with it, as the
    selection answered. Before, "after no selection left unanswered since the search's last answer"."""
    line = SerialLine(TrailingRead([MBusSlave(5, "22220001", 1.0)], b"\xe5"), LineSettings(9600, parity="E")).start()
    try:
        done = _scan(line, tmp_path)
    finally:
        line.stop()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# an acknowledgement (E5h) came after the 0.3 s answer window, after the selection FFFFFFFF (F: any "
        "digit) was answered in time, none left unanswered since (a second meter it selects, acknowledging "
        "late?): a meter too late to be found; scan again with a longer --timeout (and raise the bus's "
        "answer_timeout_s for the gateway to read it)",
        "# 1 meters found on m (secondary search)",
    ]
    assert "22220001" in done.stdout


class LateFrameFirst(MBusSlaves):
    """Every RSP_UD of the meter ``first_before`` answers preceded, 20 ms before it, by ``late``: another
    meter's answer to an earlier read arriving just as this one is asked (9600 baud 8E1: 11 bits a
    character), both whole."""

    def __init__(self, slaves: list[MBusSlave], first_before: str, late: bytes):
        super().__init__(slaves)
        self.first_before, self.late = first_before, late

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        if reply is None or reply.data[:1] != b"\x68" or decode_frame(reply.data)["id"] != self.first_before:
            return reply
        char_s = 11 / 9600
        starts = [i * char_s for i in range(len(self.late))]
        own_starts = starts[-1] + char_s + 0.02
        starts += [own_starts + i * char_s for i in range(len(reply.data))]
        return Reply(self.late + reply.data, reply.address, char_starts_s=tuple(starts))


#: the answer of a meter a wildcard selection 1234000F matches too, sent at FDh as a selected meter's
_WILDCARD_NEIGHBOUR = build_rsp_ud(
    0xFD, "12340009", "ELS", 7, "water", 0, 0, [(DataRecord("volume", "m3", 99.0), "bcd8")]
)


def test_a_poll_by_secondary_address_never_takes_another_meter_s_late_frame_as_its_reading() -> None:
    """A guard (it passes before and after: the poll checks the identification): SEC-1 (secondary
    address 12340001) is polled, and a late RSP_UD from 12340009 (a meter the wildcard selection
    1234000F would select too, volume 99 m3) comes right before SEC-1's own answer, in its REQ_UD2's
    window. The poll's reading is SEC-1's own (1 m3), the late frame passed over and counted as
    SEC-9's (configured as 12340009; on_late FDh, the unit of a meter read by secondary address): no
    reading of one meter is published under another's id."""
    slaves = LateFrameFirst([MBusSlave(0, "12340001", 1.0)], "12340001", _WILDCARD_NEIGHBOUR)
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    heard: list[int | None] = []
    try:
        sec_1 = MeterConfig("SEC-1", 253, secondary_address="12340001")
        sec_9 = MeterConfig("SEC-9", 253, secondary_address="12340009")
        transport = MBusTransport(_bus(line.port, sec_1, sec_9), on_late=heard.append)
        reading = transport.read_blocking(sec_1)
        transport.line.close()
    finally:
        line.stop()
    assert (reading.meter_id, reading.volume_m3, heard) == ("SEC-1", 1.0, [253])


def test_a_search_never_finds_a_meter_under_another_s_identification_from_a_late_frame() -> None:
    """A guard (it passes before and after): the meter 12340001 acknowledges the selection 1234000F,
    and every answer of its to the search's read comes right behind a late RSP_UD from 12340009,
    which that wildcard selection matches too (a slow meter's answer to an earlier read). At
    1234000F the search's read takes 12340009's frame (the selection matches it), then 12340001's
    own comes within the window: a collision, narrowed down; at 12340001, 12340009's frame is passed
    over (the selection does not match it) and 12340001 found with its own volume. Every meter said
    is said with the data its own frame carries: 12340009 only as a late answer, never found with
    12340001's volume, nor 12340001 with 12340009's."""
    slaves = LateFrameFirst([MBusSlave(0, "12340001", 1.0)], "12340001", _WILDCARD_NEIGHBOUR)
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    try:
        transport = MBusTransport(_bus(line.port))
        found = transport.search_blocking("1234000")
        transport.line.close()
    finally:
        line.stop()
    assert [(meter.identification, meter.volume_m3) for meter in found] == [("12340001", 1.0)]
    assert transport.late_reads_in_search == ["12340009"]


# ---- a device no meter is configured with -----------------------------------------------------------------

UNCONFIGURED_HINT = (
    "mbus-1: an answer from a device no meter on the bus is configured with came late (after its request's answer "
    "window, or in another request's), carrying primary address 9 and identification 11110001: a device that "
    "answers with another address than it is asked at (its meter's polls then fail as 'no answer'), or a meter on "
    "the line left out of the configuration? `aquami gateway scan` lists the bus's meters by identification"
)


def test_an_answer_from_an_unconfigured_address_in_a_meter_s_window_counts_as_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The device at primary address 1 answers at once, but its frames say address 9: not M-1's answer
    (passed over, the poll fails as 'no answer'), and now counted on the bus and said once an episode;
    before, dropped uncounted."""
    slaves = MBusSlaves([MBusSlave(1, "11110001", 12.5, answers_as=9)])
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    try:
        bus = _bus(line.port, MeterConfig("M-1", 1))
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll_in_turn(bus, 2, 0.0), 60))
    finally:
        line.stop()
    assert results == [False, False]
    assert heard == [9, 9]  # each counted (the health status's late_answers), on_late told its address
    assert _warnings(caplog) == [UNCONFIGURED_HINT]  # one episode: said once


def test_a_late_answer_from_an_unconfigured_address_heard_before_the_next_request_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same device answering after the window: heard on the line kept open, before the next
    request; before, dropped uncounted there too."""
    slaves = SlowReads([MBusSlave(1, "11110001", 12.5, answers_as=9)], late_by_s=LATE_BY_S)
    line = SerialLine(slaves, LineSettings(9600, parity="E")).start()
    try:
        meter = MeterConfig("M-1", 1)
        bus = _bus(line.port, meter)
        with caplog.at_level(logging.INFO):
            heard, results = asyncio.run(asyncio.wait_for(_poll(bus, [(meter, 1.0), (meter, 0.0)]), 60))
    finally:
        line.stop()
    assert results == [False, False]
    # the first poll's answer, heard before the second's SND_NKE (the second's, if the transport's close
    # comes after it on a loaded machine)
    assert heard in ([9], [9, 9])
    assert _warnings(caplog) == [UNCONFIGURED_HINT]
