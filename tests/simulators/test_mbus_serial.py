"""Wired M-Bus over the pty with a raw pyserial master: what a real bus of meters would send.

The master here builds its frames by hand (EN 13757-2 clause 5.2: a checksum is the byte sum of C, A
and the user data), independent of ``firmware_protocols``, and runs the wildcard secondary search of
EN 13757-3 Annex E: select with a pattern whose unknown digits are Fh; silence means no meter, a
clean E5h exactly one, anything else a collision of several, so the next digit is fixed in turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import serial

from firmware_protocols.mbus import decode_frame
from simulators.mbus_bus import MBusSimulator, mbus_line
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.serial_line import SerialLine, pty_accepts_parity
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

INSTALLED = datetime(2026, 5, 20, tzinfo=UTC)
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE
ACK = b"\xe5"


# ---- a minimal M-Bus master, frames built by hand -------------------------------------------------


def short_frame(c: int, a: int) -> bytes:
    return bytes([0x10, c, a, (c + a) & 0xFF, 0x16])


def req_ud2(address: int, fcb: bool) -> bytes:
    return short_frame(0x7B if fcb else 0x5B, address)


def select(pattern: str) -> bytes:
    """SND_UD to FDh, CI 52h: identification digits (F = any) LSB first, then FFh wildcards."""
    ident = bytes.fromhex(pattern)[::-1]
    body = bytes([0x53, 0xFD, 0x52]) + ident + b"\xff\xff\xff\xff"
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum(body) & 0xFF, 0x16])


class Master:
    """A master on the simulated line that knows, from the line's record of each transaction, when
    the slaves have answered all they will: a silence is a silence however late the simulator's
    thread runs. It used to take 30 to 60 ms of quiet for the end of an answer, and a loaded machine
    cut long frames short and lost E5h answers (a wildcard search then skipped whole branches)."""

    def __init__(self, port: str, baudrate: int, line: SerialLine) -> None:
        self.port = serial.Serial(port, baudrate, parity=PARITY, timeout=0)
        self.line = line

    def transact(self, frame: bytes, deadline_s: float = 10.0) -> bytes:
        """Send ``frame``; return what came back once the line has recorded its transaction (its
        answer, or that there was none) and every byte of the answer has been read."""
        self.port.reset_input_buffer()
        before = self.line.transactions[-1] if self.line.transactions else None
        self.port.write(frame)
        deadline = time.monotonic() + deadline_s
        got = bytearray()
        while time.monotonic() < deadline:
            got += self.port.read(512)
            done = self.line.transactions[-1] if self.line.transactions else None
            handled = done is not None and done is not before and done.request == frame
            if handled and (done.reply is None or len(got) >= len(done.reply)):  # type: ignore[union-attr]
                return bytes(got)
            time.sleep(0.002)
        raise AssertionError(f"the line never finished the transaction of {frame.hex()}")

    def close(self) -> None:
        self.port.close()


def secondary_search(master: Master) -> list[str]:
    """EN 13757-3 Annex E wildcard search: every identification on the bus."""
    found: list[str] = []

    def probe(prefix: str) -> None:
        for digit in "0123456789":
            pattern = (prefix + digit).ljust(8, "F")
            answer = master.transact(select(pattern))
            if not answer:
                continue
            if answer == ACK:
                frame = master.transact(req_ud2(0xFD, True))
                found.append(frame[10:6:-1].hex())  # the identification in the RSP_UD's long header
            elif len(prefix) < 7:
                probe(prefix + digit)  # several meters match: fix the next digit too
            else:
                raise AssertionError(f"collision on a full identification {pattern}")

    probe("")
    return found


# ---- the bus under test -------------------------------------------------------------------------------


def bus_meters(ids: list[str]) -> list[MBusWaterMeter]:
    out = []
    for n, ident in enumerate(ids):
        model = MeterModel(f"MB{ident}", installed=INSTALLED, seed=n, initial_m3=float(n))
        model.read(NOW)  # the model's days worked out before the master's timeouts start
        out.append(MBusWaterMeter(model, 0, ident, turnaround_bits=11 + 7 * n % 40))
    return out


IDS = (
    [f"7777{d}777" for d in range(4)]  # deep: a collision at each of the first four digits
    + [f"26{d}00001" for d in range(6)]  # resolved at the third digit
    + [f"31{d}0001{d}" for d in range(4)]
    + ["40000001", "50000001", "60000001", "12345678", "98765432", "00000001"]  # alone from the first digit
)


def test_wildcard_search_finds_every_meter_of_twenty_on_one_bus() -> None:
    assert len(IDS) == 20
    with MBusSimulator(bus_meters(IDS), mbus_line(9600), clock=lambda: NOW) as sim:
        master = Master(sim.port, 9600, sim.line)
        try:
            found = secondary_search(master)
        finally:
            master.close()
    assert sorted(found) == sorted(IDS)


Bus = tuple[MBusSimulator, Master, list[MBusWaterMeter], dict[str, datetime]]


@pytest.fixture
def bus() -> Iterator[Bus]:
    meters = bus_meters(["26000001", "26000002"])
    meters[0].primary_address, meters[1].primary_address = 1, 2
    clock = {"now": NOW}
    plan = WireFaultPlan(
        [
            WireFault(WireFaultKind.NO_REPLY, address=26000002, limit=1),
            WireFault(WireFaultKind.SLOW, address=26000002, delay_s=0.4, start=NOW + timedelta(hours=1)),
            WireFault(
                WireFaultKind.ABSENT, address=26000001, start=NOW + timedelta(hours=2), end=NOW + timedelta(hours=3)
            ),
        ]
    )
    sim = MBusSimulator(meters, mbus_line(2400), plan, clock=lambda: clock["now"]).start()
    master = Master(sim.port, 2400, sim.line)
    yield sim, master, meters, clock
    master.close()
    sim.stop()


def test_reads_by_primary_address_at_2400_baud_no_faster_than_the_line(bus: Bus) -> None:
    sim, master, meters, _ = bus
    t0 = time.monotonic()
    frame = master.transact(req_ud2(1, True))
    elapsed = time.monotonic() - t0
    decoded = decode_frame(frame)
    assert decoded["id"] == "26000001"
    volume = next(r["value"] for r in decoded["records"] if r["quantity"] == "volume" and r["storage"] == 0)
    assert volume == pytest.approx(meters[0].meter.read(NOW).volume_m3, abs=1e-9)
    # request (5 bytes) and reply clocked at 2400 baud 8E1: 11 bits per character
    assert elapsed >= (5 + len(frame)) * 11 / 2400
    reply = sim.line.transactions[-1]
    assert reply.reply == frame
    # on the line, byte i left no earlier than the request's end + the turnaround + (i + 1) characters
    start = reply.request_end + meters[0].turnaround_bits / 2400
    assert all(t >= start + (i + 1) * 11 / 2400 for i, t in enumerate(reply.reply_times))


def test_wire_faults_no_reply_slow_and_a_meter_that_goes_away_and_comes_back(bus: Bus) -> None:
    _, master, _, clock = bus
    assert master.transact(req_ud2(2, True)) == b""  # the first request is lost
    assert decode_frame(master.transact(req_ud2(2, True)))["id"] == "26000002"  # the retry gets it

    clock["now"] = NOW + timedelta(hours=1, minutes=1)
    t0 = time.monotonic()
    slow = master.transact(req_ud2(2, False))
    assert decode_frame(slow)["id"] == "26000002"
    assert time.monotonic() - t0 >= 0.4 + (5 + len(slow)) * 11 / 2400  # the delay on top of the line's time

    clock["now"] = NOW + timedelta(hours=2, minutes=30)
    assert master.transact(select("26000001")) == b""  # gone
    assert master.transact(req_ud2(1, True)) == b""
    clock["now"] = NOW + timedelta(hours=3, minutes=1)
    assert master.transact(select("26000001")) == ACK  # back
    assert decode_frame(master.transact(req_ud2(0xFD, True)))["id"] == "26000001"


def test_two_selected_meters_garble_the_line() -> None:
    with MBusSimulator(bus_meters(["26000001", "26000002", "36000002"]), clock=lambda: NOW) as sim:
        master = Master(sim.port, 2400, sim.line)
        try:
            assert master.transact(select("3FFFFFFF")) == ACK
            answer = master.transact(select("2600000F"))
        finally:
            master.close()
    assert answer and answer != ACK


def test_answers_far_apart_keep_the_silence_between_them() -> None:
    """Two meters answer a wildcard selection at 11 and at 330 bit times, both within EN 13757-2: on the
    line the second E5h starts 319 bit times (133 ms at 2400 baud) after the first, and a master must
    wait that long to know a second meter matched."""
    meters = bus_meters(["26000001", "26000002"])
    meters[0].turnaround_bits, meters[1].turnaround_bits = 11, 330
    with MBusSimulator(meters, clock=lambda: NOW) as sim:
        port = serial.Serial(sim.port, 2400, parity=PARITY, timeout=0)
        try:
            port.write(select("2600000F"))
            got = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(got) < 2:
                got += port.read(8)
                time.sleep(0.001)
        finally:
            port.close()
        answer = sim.line.transactions[-1]
    assert got == ACK + ACK and answer.reply == ACK + ACK
    # When the line sent each byte, by its own record (as the 2400-baud test checks): a character's
    # stop bit ends 11 bit times after its start, and the second starts 330 bit times after the request
    # ends. Times are lower bounds, which a loaded machine's lateness cannot break; a gap measured by the
    # reader could (the first byte read late, both at once). Back to back, the second left 33 bit times
    # (13.75 ms) after the request's end: the bug this test guards.
    first, second = answer.reply_times
    assert first >= answer.request_end + (11 + 11) / 2400
    assert second >= answer.request_end + (330 + 11) / 2400  # 142 ms; not 13.75 ms
