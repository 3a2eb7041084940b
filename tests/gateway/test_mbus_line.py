"""An M-Bus line that never goes quiet (a short circuit reads as endless zero bytes; a meter that keeps
transmitting): an exchange ends in bounded time, the meters go offline, and the bus can be stopped
and reloaded while it lasts."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import MBUS_BAUD_RATES, MBusBusConfig, parse_config_text
from gateway.mbus import MBusLine
from gateway.service import Gateway
from gateway.transport import PollError
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import meters, running, until
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves
from tests.services import free_port

PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE


class BabblingPort:
    """A serial port on a line that never goes quiet: ``fill`` bytes ``gap_s`` apart, on a fake clock."""

    def __init__(self, fill: int, gap_s: float):
        self.fill, self.gap_s = fill, gap_s
        self.now = 0.0
        self.timeout = 0.0
        self.bytes_read = 0

    def monotonic(self) -> float:
        return self.now

    def read(self, count: int) -> bytes:
        if self.now > 60:
            raise AssertionError(f"still reading after {self.now:.0f} s of a line that never goes quiet")
        arrived = min(count, int(self.timeout / self.gap_s))
        self.now += self.timeout if arrived < count else count * self.gap_s
        self.bytes_read += arrived
        return bytes([self.fill]) * arrived

    @property
    def in_waiting(self) -> int:
        """A line that never goes quiet always has bytes waiting (the exchange now reads them before
        it sends: gateway.mbus_line ``_pending``)."""
        return 1

    def reset_input_buffer(self) -> None: ...

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None: ...


@settings(max_examples=60, deadline=None)
@given(
    baudrate=st.sampled_from(MBUS_BAUD_RATES),
    parity=st.sampled_from(["N", "E"]),
    fill=st.integers(0, 255).filter(lambda b: b != 0x68),  # 0x00: a short circuit
    gap_chars=st.floats(1.0, 3.5),  # bytes closer than the 4 character times of silence a drain waits for
)
def test_an_exchange_on_a_line_that_never_goes_quiet_ends_in_bounded_time(
    baudrate: int, parity: str, fill: int, gap_chars: float
) -> None:
    """``_drain`` read until the line was quiet, and a short circuit never is: the exchange never
    ended, in a thread that held the line. Now it ends after the drain's limit (the answer delay and
    the longest frame with a margin: 2.0 s at 2400 baud), with an error that says what the line
    looks like."""
    line = MBusLine(MBusBusConfig("mbus-1", "/dev/null", (), baudrate=baudrate, parity=parity))  # type: ignore[arg-type]
    port = BabblingPort(fill, gap_chars * line.char_s)
    line.port = port  # type: ignore[assignment]
    line.monotonic = port.monotonic
    with pytest.raises(PollError, match=r"line never quiet \(short circuit, or a meter that keeps transmitting\?\)"):
        line.exchange(bytes([0x10, 0x40, 0x01, 0x41, 0x16]))
    first_bytes = line.answer_s + 5 * line.char_s + 3 * line.char_s + 0.01  # the answer's first (and an ACK's second)
    assert port.now <= first_bytes + line.drain_limit_s + 4 * line.char_s + 0.01


def test_a_read_under_way_is_aborted_from_another_thread() -> None:
    """A timed-out attempt's reset and a stop waited on the lock the reading thread held; now they
    abort the read under way (pyserial's cancel_read) and every read after it fails until the line
    is closed."""
    with SerialLine(MBusSlaves([]), LineSettings(baudrate=2400, parity="E")) as silent:
        line = MBusLine(MBusBusConfig("mbus-1", silent.port, (), baudrate=2400, parity=PARITY))  # type: ignore[arg-type]
        port = line.open()
        threading.Timer(0.2, line.abort).start()
        started = time.monotonic()
        with pytest.raises(PollError, match="aborted"):
            line._read(port, 1, 10.0)
        assert time.monotonic() - started < 2.0
        with pytest.raises(PollError, match="aborted"):
            line.exchange(b"\x10\x40\x01\x41\x16")
        line.close()
        with pytest.raises(PollError, match="no answer"):
            line.exchange(b"\x10\x40\x01\x41\x16")
        line.close()


class Short:
    """Continuous zero bytes on a line while on, paced at its baud rate (what a master reads from a
    short-circuited M-Bus), through the line's own sending, a chunk ahead so it is never quiet."""

    def __init__(self, line: SerialLine, chunk: int = 32):
        self.line, self.chunk = line, chunk
        self.on = threading.Event()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Short:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._quit.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        period = self.chunk * self.line.settings.char_time_s
        while not self._quit.is_set():
            if not self.on.is_set():
                time.sleep(0.01)
                continue
            self.line.push(bytes(self.chunk))
            self.line.push(bytes(self.chunk))
            due = time.monotonic()
            while self.on.is_set() and not self._quit.is_set():
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
                self.line.push(bytes(self.chunk))


def config_text(spool: Path, mbus_port: str, tcp_port: int) -> str:
    """An M-Bus bus of two meters and a Modbus TCP bus of two, each polled every second."""
    return f"""gateway_id = "gw-short"
[mqtt]
url = "mqtt://127.0.0.1:{free_port()}"
[spool]
path = "{spool}"
[health]
offline_after = 2
status_interval_s = 1
[[buses]]
name = "mbus-1"
protocol = "mbus"
device = "{mbus_port}"
baudrate = 9600
parity = "{PARITY}"
poll_interval_s = 1.0
retries = 1
retry_backoff_s = 0.05
[[buses]]
name = "tcp-1"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {tcp_port}
poll_interval_s = 0.5
timeout_s = 0.5
[[meters]]
meter_id = "HOUSE-1"
bus = "mbus-1"
address = 1
[[meters]]
meter_id = "HOUSE-2"
bus = "mbus-1"
address = 2
[[meters]]
meter_id = "WM-0001"
bus = "tcp-1"
unit_id = 1
[[meters]]
meter_id = "WM-0002"
bus = "tcp-1"
unit_id = 2
"""


def test_a_short_circuited_line_takes_its_meters_offline_and_does_not_hold_up_reload_or_stop(tmp_path: Path) -> None:
    """A short on an M-Bus line (continuous zero bytes) hung its bus: the drain never ended, in a
    thread holding the line; no failed attempt was counted and no meter went offline (12 polls
    skipped in 14 s, health all well), and a stop or reload (which stops every bus) waited until the
    short cleared: a Modbus TCP bus beside it polled nothing meanwhile. Now every attempt fails in
    bounded time and counts, the meters go offline, and reload and stop take moments."""
    line = SerialLine(
        MBusSlaves([MBusSlave(1, "11110001", 100.0), MBusSlave(2, "11110002", 200.0)]),
        LineSettings(baudrate=9600, parity="E"),
    ).start()
    events: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {}

    async def scenario(short: Short) -> None:
        tcp = ModbusTcpSimulator(meters(2))
        await tcp.start()
        config = parse_config_text(config_text(tmp_path / "s.sqlite", line.port, tcp.port))
        gateway = Gateway(config)
        emit = gateway.emit

        def recording(event: dict[str, Any]) -> None:
            events.append(event)
            emit(event)

        gateway.emit = recording  # type: ignore[method-assign]
        offline = lambda: {e["meter_id"] for e in events if e["event"] == "meter_offline"}  # noqa: E731
        try:
            async with running(gateway, drain_timeout=0.1):  # no broker to drain to
                await until(lambda: "mbus-1" in gateway.health.buses, 5)
                await until(lambda: gateway.health.buses["mbus-1"].successes >= 2, 10)
                bus = gateway.health.buses["mbus-1"]
                ok_before, failed_before = bus.successes, bus.attempts - bus.successes
                short.on.set()
                await until(lambda: offline() == {"HOUSE-1", "HOUSE-2"}, 20)
                bus = gateway.health.buses["mbus-1"]
                outcome["offline"] = offline()
                outcome["failed"] = bus.attempts - bus.successes - failed_before
                outcome["ok_during_short"] = bus.successes - ok_before
                tcp_before = gateway.health.buses["tcp-1"].successes
                started = time.monotonic()
                await asyncio.wait_for(gateway.apply_config(config), 30)
                outcome["reload_s"] = time.monotonic() - started
                await until(lambda: gateway.health.buses["tcp-1"].successes - tcp_before >= 4, 10)
                outcome["tcp_after_reload"] = gateway.health.buses["tcp-1"].successes - tcp_before
                started = time.monotonic()
            outcome["stop_s"] = time.monotonic() - started
        finally:
            short.on.clear()
            await tcp.stop()

    try:
        with Short(line) as short:
            asyncio.run(asyncio.wait_for(scenario(short), 60))
    finally:
        line.stop()
    assert outcome["offline"] == {"HOUSE-1", "HOUSE-2"}, outcome
    assert outcome["failed"] >= 4 and outcome["ok_during_short"] <= 2, outcome
    # moments, not until the short clears (the bug: for as long as it lasts, here for good); the bounds are
    # wide, as a loaded machine is slow to stop and start buses
    assert outcome["reload_s"] < 10.0, outcome
    assert outcome["tcp_after_reload"] >= 4, outcome  # two meters every 0.5 s: about 20 in 10 s
    assert outcome["stop_s"] < 10.0, outcome
