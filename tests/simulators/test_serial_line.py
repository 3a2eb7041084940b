"""The pty line: a client opens it with pyserial, and bytes come no faster than the baud rate allows."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import serial

from simulators.serial_line import LineSettings, Reply, SerialLine, pty_accepts_parity
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE


class Echo:
    """Answers every request with the request repeated ``times`` times, after ``turnaround_s``."""

    def __init__(self, times: int = 4, turnaround_s: float = 0.002) -> None:
        self.times = times
        self.turnaround_s = turnaround_s
        self.requests: list[bytes] = []

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        self.requests.append(frame)
        return Reply(frame * self.times, address=frame[0], turnaround_s=self.turnaround_s)


Marks = list[tuple[float, int]]  # (seconds since the start, bytes received so far) per chunk


def received(port: serial.Serial, expect: int, t0: float, timeout: float = 3.0) -> tuple[bytes, Marks]:
    """Up to ``expect`` bytes, and (seconds since ``t0``, bytes received so far) per chunk."""
    got = bytearray()
    marks: Marks = []
    while len(got) < expect and time.monotonic() - t0 < timeout:
        chunk = port.read(expect - len(got))
        if chunk:
            got += chunk
            marks.append((time.monotonic() - t0, len(got)))
    return bytes(got), marks


def transact(port: serial.Serial, request: bytes, expect: int, timeout: float = 3.0) -> Marks:
    """Write ``request``; return (seconds since the write began, bytes received so far) per chunk."""
    port.reset_input_buffer()
    t0 = time.monotonic()
    port.write(request)
    return received(port, expect, t0, timeout)[1]


@pytest.mark.parametrize(
    "settings",
    [LineSettings(9600, 8, "E", 1), LineSettings(2400, 8, "E", 1), LineSettings(19200, 8, "N", 2)],
    ids=["9600-8E1", "2400-8E1-mbus", "19200-8N2"],
)
def test_bytes_arrive_no_faster_than_the_baud_rate(settings: LineSettings) -> None:
    device = Echo(times=6)
    request = bytes([5, 1, 2, 3, 4, 5, 6, 7])
    with SerialLine(device, settings) as line, serial.Serial(line.port, parity=PARITY, timeout=0.05) as port:
        marks = transact(port, request, 6 * len(request))
    assert marks and marks[-1][1] == 6 * len(request)
    assert device.requests == [request]
    ct = settings.bits_per_char / settings.baudrate
    assert ct == pytest.approx({9600: 11 / 9600, 2400: 11 / 2400, 19200: 11 / 19200}[settings.baudrate])
    # The request itself takes len × ct on the wire, then the line must fall idle (t3.5) before the
    # device answers; each reply byte needs its own character time after that. Lateness is allowed,
    # earliness is not.
    earliest_reply = len(request) * ct + settings.idle_s
    for elapsed, n in marks:
        assert elapsed >= earliest_reply + n * ct - 1e-4, (elapsed, n)


def test_silence_splits_requests_and_no_reply_means_silence() -> None:
    plan = WireFaultPlan([WireFault(WireFaultKind.NO_REPLY, address=9)])
    device = Echo(times=1)
    with (
        SerialLine(device, LineSettings(19200, 8, "E", 1), plan) as line,
        serial.Serial(line.port, parity=PARITY, timeout=0.05) as port,
    ):
        assert [n for _, n in transact(port, b"\x01\x02\x03", 3)][-1] == 3
        assert transact(port, b"\x09\x02\x03", 3, timeout=0.3) == []
        assert [n for _, n in transact(port, b"\x02\xaa", 2)][-1] == 2
    assert device.requests == [b"\x01\x02\x03", b"\x09\x02\x03", b"\x02\xaa"]
    assert [(a.address, a.kind) for a in plan.log] == [(9, WireFaultKind.NO_REPLY)]


def test_a_slow_reply_is_late_by_its_delay() -> None:
    plan = WireFaultPlan([WireFault(WireFaultKind.SLOW, delay_s=0.25)])
    with (
        SerialLine(Echo(times=1), LineSettings(19200, 8, "E", 1), plan) as line,
        serial.Serial(line.port, parity=PARITY, timeout=0.05) as port,
    ):
        marks = transact(port, b"\x01\x02", 2)
    assert marks[0][0] >= 0.25


def test_pushed_bytes_stream_at_the_line_rate() -> None:
    settings = LineSettings(2400, 8, "E", 1)
    frame = bytes(range(40))
    with SerialLine(Echo(), settings) as line, serial.Serial(line.port, parity=PARITY, timeout=0.05) as port:
        port.reset_input_buffer()
        t0 = time.monotonic()
        line.push(frame)
        line.push(frame)
        got, marks = received(port, 80, t0)
    assert got == frame + frame
    for elapsed, n in marks:
        assert elapsed >= n * settings.char_time_s - 1e-4


def test_a_slow_pushed_message_is_late_by_its_delay_and_holds_up_no_other() -> None:
    """A wM-Bus receiver's stream: a ``slow`` telegram comes after its delay; the next meter's does not wait."""
    # a delay long enough that the prompt one (3.5 ms on the line) comes well before it even on a loaded
    # machine: held up, it would come after the delay
    delay_s = 1.5
    plan = WireFaultPlan([WireFault(WireFaultKind.SLOW, address=1, delay_s=delay_s)])
    settings = LineSettings(57600, 8, "N", 1)
    late, prompt = b"\x01" * 20, b"\x02" * 20
    with SerialLine(Echo(), settings, plan) as line, serial.Serial(line.port, timeout=0.02) as port:
        port.reset_input_buffer()
        t0 = time.monotonic()
        line.push(late, address=1)
        line.push(prompt, address=2)
        got, marks = received(port, 40, t0, timeout=20)
    assert got == prompt + late
    assert max(elapsed for elapsed, n in marks if n <= 20) < 1.0
    assert min(elapsed for elapsed, n in marks if n > 20) >= delay_s
    assert [(a.address, a.kind) for a in plan.log] == [(1, WireFaultKind.SLOW)]
