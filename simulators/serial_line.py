"""A serial line on a pseudo-terminal, with the timing of the real wire.

The gateway opens :attr:`SerialLine.port` (the pty's slave side, e.g. ``/dev/pts/7``) with pyserial like
any serial port. Behind the master side a thread plays the wire and the devices on it:

- bytes the gateway writes arrive one character time apart (``bits_per_char / baudrate``; 9600 8E1
  is 11 bits, 1.146 ms), as a UART would clock them out;
- a request is complete after the line has been idle for ``idle_chars`` character times (Modbus RTU's
  t3.5; M-Bus devices just wait for silence as well); it then goes to the :class:`LineDevice`;
- the reply, after the device's turnaround and any wire fault (:mod:`simulators.wire_faults`), is
  delivered byte by byte, each no earlier than its last bit would have left a real UART.

A device that talks unasked (a wM-Bus receiver's stream) uses :meth:`SerialLine.push`, paced alike;
a ``slow`` wire fault holds a pushed message back by its delay (the others do not wait for it).
While no one has the port open, what the line sends goes nowhere, as on a real port: a gateway that
opens it later does not get a backlog of stale messages.

The line is half-duplex and carries one transaction at a time, as RS-485 and the M-Bus do. It knows
nothing of any protocol: bytes in, bytes out, timing and faults. The device names the address that
answered (for address-specific wire faults) and how to corrupt its checksum.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import os
import queue
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from aquami.clock import Clock, utc_now
from simulators.wire_faults import Outcome, WireFaultPlan, flip_last_byte

Parity = Literal["N", "E", "O"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineSettings:
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = "E"
    stopbits: int = 1
    idle_chars: float = 3.5  # silence that ends a frame (Modbus RTU t3.5)
    min_idle_s: float = 0.00175  # Modbus RTU: above 19200 baud t3.5 is fixed at 1.75 ms

    def __post_init__(self) -> None:
        if self.baudrate <= 0 or self.bytesize not in (5, 6, 7, 8) or self.stopbits not in (1, 2):
            raise ValueError(f"unusable serial settings {self}")

    @property
    def bits_per_char(self) -> int:
        """Start bit, data bits, parity bit if any, stop bits: 8E1 is 11."""
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    @property
    def char_time_s(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def idle_s(self) -> float:
        return max(self.idle_chars * self.char_time_s, self.min_idle_s)

    def transfer_time_s(self, n: int) -> float:
        return n * self.char_time_s


@dataclass(frozen=True)
class Reply:
    data: bytes
    address: int | None = None  # who answered, for address-specific wire faults
    turnaround_s: float = 0.002  # the device's time between the request's end and its reply
    corrupt_checksum: Callable[[bytes], bytes] = flip_last_byte
    #: When each character starts, in seconds after the first (several answers with silence between
    #: them, as on an M-Bus collision); empty: back to back.
    char_starts_s: tuple[float, ...] = ()


class LineDevice(Protocol):
    """Everything on the far end of the line: gets each request, returns a reply or None (silence)."""

    def handle(self, frame: bytes, now: datetime) -> Reply | None: ...


@functools.cache
def pty_accepts_parity() -> bool:
    """Whether this system's ptys take a parity setting.

    A pty has no UART, so the setting changes nothing on the wire: the line is timed from its own
    :class:`LineSettings`. Linux's pty driver drops the parity bit from any settings it is given
    (``pty_set_termios`` clears PARENB); some systems then refuse the settings (``tcsetattr`` says
    EINVAL: opening the port 8E1 fails with ``Invalid argument``), others take them and drop the
    parity (Linux 6.18 with glibc 2.36 takes pyserial's 8E1 and refuses a bare PARENB). Either way,
    open it with parity "N" (pyserial's ``parity=serial.PARITY_NONE``): :func:`port_framing`. The
    answer is the system's: asked once.
    """
    master, slave = os.openpty()
    try:
        attrs = termios.tcgetattr(slave)
        attrs[2] |= termios.PARENB
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        return bool(termios.tcgetattr(slave)[2] & termios.PARENB)
    except termios.error:
        return False
    finally:
        os.close(master)
        os.close(slave)


def port_parity(settings: LineSettings) -> Parity:
    """The parity a program opens the line's pty with: the line's own where ptys take a parity, else
    none (the line stays timed as its own framing)."""
    return settings.parity if pty_accepts_parity() else "N"


def port_framing(settings: LineSettings) -> str:
    """How a program opens the line's pty, as a technician writes it: ``9600 8N1`` (:func:`port_parity`)."""
    return f"{settings.baudrate} {settings.bytesize}{port_parity(settings)}{settings.stopbits}"


@dataclass(frozen=True)
class Transaction:
    """One request and what went back, with monotonic times (for tests and traces)."""

    request: bytes
    request_end: float
    reply: bytes | None
    reply_times: tuple[float, ...]


@dataclass
class SerialLine:
    device: LineDevice
    settings: LineSettings = field(default_factory=LineSettings)
    faults: WireFaultPlan | None = None
    clock: Clock = utc_now
    keep_transactions: int = 100

    def __post_init__(self) -> None:
        self._master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline before the gateway opens the port
        os.set_blocking(self._master, False)
        self.port = os.ttyname(slave)
        # Not held open here: the master then reports a hang-up while no one has the port open, and
        # what is sent meanwhile goes nowhere, as on a real port (not to a gateway opening it later).
        os.close(slave)
        self._hangup = select.poll()
        self._hangup.register(self._master, select.POLLIN)
        self._stop = threading.Event()
        self._outbox: queue.SimpleQueue[tuple[bytes, int | None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread: threading.Thread | None = None
        self.transactions: list[Transaction] = []

    def start(self) -> SerialLine:
        self._thread = threading.Thread(target=self._run, name=f"serial-line {self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> SerialLine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the wire -------------------------------------------------------------------------------

    def _read_master(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # EIO: no one has the port open
            return b""

    def _port_open(self) -> bool:
        """Whether anyone (a gateway) has the port open."""
        return not any(events & select.POLLHUP for _, events in self._hangup.poll(0))

    def push(self, data: bytes, address: int | None = None) -> None:
        """Send bytes unasked (a wM-Bus receiver's stream), after whatever is already on the wire."""
        self._outbox.put((data, address))
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _schedule(self, tx: list[tuple[float, int]], start: float, data: bytes, starts: tuple[float, ...] = ()) -> None:
        """Queue ``data`` to leave from ``start`` on, after what is queued: one character time per byte,
        or each byte one character time after its start in ``starts`` (seconds after the first's)."""
        ct = self.settings.char_time_s
        base = max(start, tx[-1][0] if tx else 0.0)
        if len(starts) < len(data):
            starts = tuple(i * ct for i in range(len(data)))
        tx.extend((base + at + ct, b) for at, b in zip(starts, data, strict=False))

    def _run(self) -> None:
        ct = self.settings.char_time_s
        rx = bytearray()
        rx_last = 0.0  # when the last received byte finished arriving
        tx: list[tuple[float, int]] = []  # (deliver no earlier than, byte)
        sent_times: list[float] = []
        pending: list[tuple[bytes, float, bytes]] = []  # replies on the wire, oldest first
        held: list[tuple[float, bytes]] = []  # pushed messages a slow fault holds back: (due, bytes), by due
        while not self._stop.is_set():
            now = time.monotonic()
            for b in self._read_master():
                rx_last = max(now, rx_last, tx[-1][0] if tx else 0.0) + ct
                rx.append(b)
            while not self._outbox.empty():
                self._hold(held, *self._outbox.get())
            now = time.monotonic()
            while held and held[0][0] <= now:
                self._schedule(tx, now, held.pop(0)[1])
            if rx and now >= rx_last + self.settings.idle_s:
                frame, frame_end = bytes(rx), rx_last
                rx.clear()
                reply = self._answer(frame, frame_end)
                if reply is None:
                    self._record(Transaction(frame, frame_end, None, ()))
                else:
                    self._schedule(tx, *reply)
                    pending.append((frame, frame_end, reply[1]))
            now = time.monotonic()
            n_due = sum(1 for t, _ in tx if t <= now)  # tx is in time order
            if n_due:
                due = bytes(b for _, b in tx[:n_due])
                del tx[:n_due]
                sent_times.extend([now] * n_due)
                # Record a finished reply before its last bytes go out, so that whoever has read the
                # whole reply also finds its transaction (a reader is not faster than this thread).
                while pending and len(sent_times) >= len(pending[0][2]):
                    frame, frame_end, data = pending.pop(0)
                    times, sent_times = sent_times[: len(data)], sent_times[len(data) :]
                    self._record(Transaction(frame, frame_end, data, tuple(times)))
                if not pending:
                    sent_times.clear()  # pushed bytes are not part of any transaction
                if self._port_open():  # else the bytes go nowhere, as on a port no one has open
                    with contextlib.suppress(OSError):
                        os.write(self._master, due)
            deadlines = [tx[0][0]] if tx else []
            deadlines += [held[0][0]] if held else []
            if rx:
                deadlines.append(rx_last + self.settings.idle_s)
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.05
            # a master no one is at is always "readable" (EIO): wait for the wake-up alone, and look again
            readable = [self._master, self._wake_r] if self._port_open() else [self._wake_r]
            with contextlib.suppress(OSError, ValueError):
                ready, _, _ = select.select(readable, [], [], min(timeout, 0.05))
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)

    def _hold(self, held: list[tuple[float, bytes]], data: bytes, address: int | None) -> None:
        """A pushed message after its wire faults: dropped, or due now or after a ``slow`` fault's delay.

        While no one has the port open it is dropped at once (its faults untouched): a receiver's
        messages then go nowhere, and a gateway opening the port later gets none of them.
        """
        if not self._port_open():
            return
        outcome = Outcome(data) if self.faults is None else self.faults.apply(data, address, self.clock())
        if outcome.reply:
            bisect.insort(held, (time.monotonic() + outcome.delay_s, outcome.reply), key=lambda item: item[0])

    def _answer(self, frame: bytes, frame_end: float) -> tuple[float, bytes, tuple[float, ...]] | None:
        at = self.clock()
        try:
            reply = self.device.handle(frame, at)
        except Exception:  # a device bug must not kill the line; it answers nothing, like a hung meter
            log.exception("device on %s failed on request %s", self.port, frame.hex())
            return None
        if reply is None:
            return None
        data: bytes | None = reply.data
        delay = 0.0
        if self.faults is not None:
            outcome = self.faults.apply(reply.data, reply.address, at, reply.corrupt_checksum)
            data, delay = outcome.reply, outcome.delay_s
        if not data:
            return None
        # The device's own computing time counts as turnaround, as on a real meter.
        return max(time.monotonic(), frame_end + reply.turnaround_s) + delay, data, reply.char_starts_s

    def _record(self, t: Transaction) -> None:
        self.transactions.append(t)
        del self.transactions[: -self.keep_transactions]
