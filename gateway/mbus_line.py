"""The blocking side of a wired M-Bus master: frames on one serial line, with the standard's timing.

- Timeouts follow EN 13757-2 clause 5.4: the answer must start within 330 bit times + 50 ms (the
  bus's ``answer_timeout_s``, wider for a converter or bridge that delays answers); the rest of the
  frame then gets its transfer time plus a margin.
- After a garbled answer the line is drained until it is quiet, so the rest of it is not taken for
  the start of the next answer; but only for as long as any answer may still be arriving (the
  answer delay, then the longest frame with half again as margin: 2.0 s at 2400 baud): a line that
  never goes quiet (a short circuit, which a master reads as endless zero bytes, or a meter that
  keeps transmitting) fails the exchange instead of holding the bus.
- A request is sent into a quiet line only: what is still arriving when it is due (a slow meter's late
  answer, half-way through) is read on until the line has been quiet for :attr:`MBusLine.quiet_s`, and
  handed whole to :attr:`MBusLine.on_pending`; a line that does not go quiet within the drain's bound
  fails the exchange, the request not sent. Before, the request went out at once: the late frame's
  head was handed over as a garbled fragment and its tail read as the next meter's answer. A late
  frame that begins as the request goes out (its first byte not yet received when the line is looked
  at) is not seen in time, and collides with the answer asked for: physical, left to the bus's retries.
- In a search, a lone E5h (a quiet line behind it) after a whole RSP_UD to the search's read is a slow
  meter's late acknowledgement, handed to :attr:`MBusLine.on_pending`, the RSP_UD taken; any other
  bytes there are a collision (:meth:`MBusLine._another_within`).
- An E5h with bytes right behind it (within three characters) is a collision (two slaves answering),
  unless an E5h is what the request asks for (a SND_NKE, a selection) and the bytes make a whole long
  frame: a slow meter's late answer begun as this meter acknowledged, handed to
  :attr:`MBusLine.on_pending`, the E5h taken (:meth:`MBusLine._late_frame_behind`).
- A level converter that echoes the request (``echo = true``): the request is read back and checked
  before the answer is waited for. Without the setting, an answer that is the request fails with a
  hint to set it (gateway.echo).
- Another thread may :meth:`MBusLine.abort` a transaction under way (a timed-out attempt, a stop):
  the read in progress returns at once (pyserial's ``cancel_read``) and every read after it fails,
  until the line is closed.
"""

from __future__ import annotations

import termios
import threading
import time
from collections.abc import Callable

import serial

from gateway.config import MBusBusConfig
from gateway.echo import echo_error
from gateway.late_answers import mbus_frames
from gateway.serial_port import open_exclusive, why_open_failed, why_tcsetattr_failed
from gateway.transport import LineUnusable, NoAnswer, PollError, TransactionAborted

ACK = 0xE5
LONGEST_FRAME = 261  # EN 13757-2: 4 bytes of header, 255 of L, checksum and stop
#: answers passed over in one exchange as not its own (:meth:`MBusLine.exchange`): one slow meter's
#: is one; more in a row is a line that keeps talking, failed rather than read for ever
MOST_PASSED_OVER = 3


def asks_for_data(request: bytes) -> bool:
    """Whether ``request`` is a REQ_UD2 (answered by an RSP_UD; a SND_NKE or a selection by an E5h)."""
    return request[0] == 0x10 and request[1] & 0x0F == 0x0B


class LineNeverQuiet(PollError):
    """Bytes kept coming for longer than any answer takes: not a meter's answer, the line's state."""


class MBusLine:
    """One serial line, one transaction at a time (the caller serialises them)."""

    def __init__(self, config: MBusBusConfig, monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.monotonic = monotonic
        self.port: serial.Serial | None = None
        self.char_s = (1 + config.bytesize + (config.parity != "N") + config.stopbits) / config.baudrate
        self.answer_s = config.answer_timeout_s  # by default clause 5.4's 330 bit times + 50 ms
        #: the longest a drain reads: any answer, even a colliding one started later, is over by then
        self.drain_limit_s = self.answer_s + LONGEST_FRAME * self.char_s * 1.5
        #: silence that says the line is quiet (an answer is over): four characters' time, for the
        #: standard's 11 to 33 bit times between frames, and 10 ms for a USB adapter's and the system's
        #: latency in handing bytes over (an FTDI adapter's latency timer, for one)
        self.quiet_s = 4 * self.char_s + 0.01
        self._aborted = threading.Event()
        self._port_lock = threading.Lock()  # open, close and abort: never held during a read
        #: told what came on the line since the last exchange (a late answer, on a port kept open
        #: after an unanswered request: gateway.mbus), before it is dropped as ever
        self.on_pending: Callable[[bytes], None] | None = None

    def open(self) -> serial.Serial:
        if self.port is None:
            c = self.config
            try:
                port = open_exclusive(c.device, c.framing, 0)  # one user: a scan beside a run garbles both
            except (serial.SerialException, ValueError) as error:
                raise LineUnusable(f"{c.name}: cannot open {c.device}: {why_open_failed(error)}") from error
            except termios.error as error:  # no SerialException: pyserial lets tcsetattr's own through
                raise LineUnusable(f"{c.name}: cannot open {c.device}: {self._refused(error)}") from None
            with self._port_lock:
                self.port = port
        return self.port

    def _refused(self, error: termios.error) -> str:
        return why_tcsetattr_failed(error, self.config.framing)

    def close(self) -> None:
        """Close the port; the next transaction opens it again and is no longer aborted."""
        with self._port_lock:
            port, self.port = self.port, None
        if port is not None:
            port.close()
        self._aborted.clear()

    def abort(self) -> None:
        """From another thread: end the transaction under way (its read returns at once) and fail any
        read until :meth:`close`. Never waits for the transaction."""
        self._aborted.set()
        with self._port_lock:
            if self.port is None:
                return
            cancel = getattr(self.port, "cancel_read", None)
            if cancel is not None:
                cancel()
            else:  # a port type without it: closing it ends the read
                self.port.close()
                self.port = None

    def _read(self, port: serial.Serial, count: int, timeout: float) -> bytes:
        if self._aborted.is_set():
            raise TransactionAborted("transaction aborted")
        try:
            port.timeout = timeout
        except termios.error as error:
            # pyserial applies a timeout with tcsetattr again whenever the settings it reads back
            # differ from its own: a pty that took parity E at open but reads back none refuses it
            # here, mid-exchange. The port is let go, so the next attempt opens it afresh.
            self.close()
            c = self.config
            raise LineUnusable(f"{c.name}: cannot open {c.device}: {self._refused(error)}") from None
        data = bytes(port.read(count))
        if self._aborted.is_set():
            raise TransactionAborted("transaction aborted")
        return data

    def _drain(self, port: serial.Serial) -> None:
        """Read and drop what is still arriving until the line is quiet, so the rest of a garbled
        answer is not taken for the start of the next one; a line not quiet within
        :attr:`drain_limit_s` is :class:`LineNeverQuiet`."""
        self._until_quiet(port, bytearray())

    def _until_quiet(self, port: serial.Serial, heard: bytearray) -> None:
        """Read what is still arriving into ``heard`` until the line has been quiet for
        :attr:`quiet_s`; a line not quiet within :attr:`drain_limit_s` is :class:`LineNeverQuiet`
        (``heard`` then holds what came)."""
        start = self.monotonic()
        while chunk := self._read(port, 256, self.quiet_s):
            heard += chunk
            if self.monotonic() - start > self.drain_limit_s:
                raise LineNeverQuiet(
                    "line never quiet (short circuit, or a meter that keeps transmitting?): "
                    f"{len(heard)} bytes in {self.monotonic() - start:.1f} s"
                )

    def exchange(
        self, frame: bytes, *, whole_window: bool = False, not_the_answer: Callable[[bytes], bool] | None = None
    ) -> bytes:
        """Send ``frame``; return the answer (E5h or a whole long frame), or raise PollError.

        ``whole_window``: the request may reach several slaves (a secondary-address search), so
        an answer is only taken once the time any slave may still start one has passed in silence.
        Slaves answer 11 to 330 bit times (+50 ms) after the request: a second E5h may come 130 ms
        after the first at 2400 baud, long after the line looked quiet. Taken early, it was read as
        the answer to the next request, and every answer after it was one request late (a search
        found none of two meters answering at 11 and 330 bit times).

        ``not_the_answer``: told of each whole answer taken (a right checksum: no collision), it says
        whether that answer is provably another's (a slow meter's late answer, which came first):
        if so, it is passed over and the line is read on, for the rest of the answer window (at
        least a few characters' time, for an answer that starts as the passed-over one ends), for
        this request's own answer. Before, a slow meter's late answer taken in the next meter's
        window failed that meter's poll too (``SND_NKE not acknowledged``, ``answer from address 1,
        not 2``), though its own answer came right after.
        """
        port = self.open()
        if self._aborted.is_set():
            raise TransactionAborted("transaction aborted")
        # Left open, as it must be on a real bus: a late frame whose first byte is still on its way
        # (a character's time, and a USB adapter's latency) when the line is looked at, or that begins
        # while the request goes out, is not heard before it; the meter asked then answers over it (a
        # physical collision: `garbled answer`, or `no answer` once the late frame is passed over), and
        # the bus's retries read it again. Listening for a quiet line before every request only moves
        # that blind spot, for quiet_s more a request (measured with benchmarks.mbus_late_answer_cut
        # --history 24: 4 -> 6 of 160 polls spoiled; the README's wired M-Bus late answers passage).
        self._pending(port)
        port.reset_input_buffer()
        port.write(frame)
        port.flush()
        if self.config.echo:
            self._read_echo(port, frame)
            wait = self.answer_s
        else:
            wait = self.answer_s + len(frame) * self.char_s  # our own bytes leave first
        window_ends = self.monotonic() + wait
        passed_over = 0
        while True:
            answer = self._answer(port, frame, wait, window_ends, whole_window, not_the_answer)
            if answer is not None:
                return answer
            passed_over += 1
            if passed_over > MOST_PASSED_OVER:
                self._drain(port)
                raise PollError(f"{passed_over} answers in a row that were not to this request")
            wait = max(window_ends - self.monotonic(), 4 * self.char_s + 0.01)

    def _answer(
        self,
        port: serial.Serial,
        frame: bytes,
        wait: float,
        window_ends: float,
        whole_window: bool,
        not_the_answer: Callable[[bytes], bool] | None,
    ) -> bytes | None:
        """The first answer that starts within ``wait``, or None for a whole one ``not_the_answer``
        passed over: see :meth:`exchange`. A long frame is passed over before a second answer is
        looked for (``whole_window``): in a search, a late RSP_UD taken in a selection's window is
        no collision, and the selection's own E5h may follow it."""
        first = self._read(port, 1, wait)
        if not first:
            raise NoAnswer("no answer")  # the meter's address is said by gateway.mbus, which knows it
        if first[0] == ACK:
            extra = self._read(port, 1, 3 * self.char_s + 0.01)
            collided = bool(extra) and not self._late_frame_behind(port, frame, extra)
            if collided or (whole_window and self._another_within(port, window_ends, not_the_answer)):
                self._drain(port)  # more than one slave answered: a collision, in a secondary-address search
                raise PollError("collision")
            return None if not_the_answer is not None and not_the_answer(first) else first
        if first[0] != 0x68:
            self._refuse_echo(port, frame, first)
            self._drain(port)
            raise PollError(f"garbled answer (starts {first.hex()})")
        head = first + self._read(port, 3, 4 * self.char_s + 0.05)
        if len(head) < 4 or head[3] != 0x68 or head[1] != head[2]:
            self._drain(port)
            raise PollError(f"garbled long frame header {head.hex()}")
        rest_len = head[1] + 2
        rest = self._read(port, rest_len, rest_len * self.char_s * 1.5 + 0.05)
        if len(rest) != rest_len:
            raise PollError(f"frame cut short ({len(head) + len(rest)} of {rest_len + 4} bytes)")
        if not self.config.echo and head + rest == frame:  # a long request (a selection), echoed
            self._drain(port)
            raise PollError(echo_error(frame))
        if not_the_answer is not None and not_the_answer(head + rest):
            return None
        # a whole RSP_UD to a REQ_UD2 (its checksum right): a lone E5h behind it is a late acknowledgement
        late_ack_possible = asks_for_data(frame) and mbus_frames(head + rest) == [head + rest]
        if whole_window and self._another_within(port, window_ends, not_the_answer, late_ack_possible):
            self._drain(port)
            raise PollError("collision (a second answer after a whole first one)")
        return head + rest

    def _late_frame_behind(self, port: serial.Serial, request: bytes, start: bytes) -> bool:
        """Whether what follows an E5h within three characters (``start``, its first byte) is a slow
        meter's late long frame, not a second answer to ``request``: only when an E5h is what
        ``request`` asks for (a SND_NKE, a selection: :func:`asks_for_data`), and what comes, read
        to a quiet line, begins with a whole long frame (68h L L 68h …, its checksum right). Then it
        is handed to :attr:`on_pending` (a late answer, counted as its sender's, as one heard before
        a request is) and the E5h stands as the answer. Anything else (bytes that make no whole long
        frame: two slaves answering at once) is a collision, as before. Before, any byte within three
        characters of an E5h was a collision: a meter's acknowledgement with a neighbour's late
        RSP_UD right behind it failed that meter's poll, and the late frame was drained uncounted."""
        if start[0] != 0x68 or asks_for_data(request):
            return False
        heard = bytearray(start + self._read(port, 3, 4 * self.char_s + 0.05))
        if len(heard) < 4 or heard[3] != 0x68 or heard[1] != heard[2]:
            return False
        self._until_quiet(port, heard)
        frames = mbus_frames(bytes(heard))
        if not frames or len(frames[0]) == 1:
            return False
        if self.on_pending is not None:
            self.on_pending(bytes(heard))
        return True

    def _pending(self, port: serial.Serial) -> None:
        """What came since the last exchange, to :attr:`on_pending` (the input buffer is then reset,
        as before every request: nothing that came unasked is taken for the next answer).

        Bytes waiting may be the head of an answer still arriving (a slow meter's late frame, which
        lasts 0.9 s at 2400 baud if it is 200 bytes long): the line is read on until it has been
        quiet for :attr:`quiet_s`, as a master waits for a quiet line before it talks, and the whole
        of what came is handed over. A line that never goes quiet is :class:`LineNeverQuiet`, within
        :attr:`drain_limit_s`, and the request is not sent. Before, the head alone was handed over (no
        whole answer: not counted) and the request sent at once, the tail then read as the next
        meter's answer: ``garbled answer``, that meter's poll failed too."""
        if not port.in_waiting:
            return
        heard = bytearray()
        try:
            self._until_quiet(port, heard)
        finally:
            if self.on_pending is not None:
                self.on_pending(bytes(heard))

    def listen(self, seconds: float) -> None:
        """Read what comes on the line for ``seconds``, and tell :attr:`on_pending` of it: a late answer
        to the last request, which no next request would hear (a search's last selection; closed, a
        port hears nothing). An answer still arriving when ``seconds`` are over is read to its end
        (up to a quiet line, as before a request: :meth:`_pending`); a line that never goes quiet is
        left to the next exchange to fail."""
        port = self.port
        if port is None or self.on_pending is None:
            return
        heard = bytearray(self._read(port, LONGEST_FRAME, seconds))
        if not heard:
            return
        try:
            self._until_quiet(port, heard)
        except LineNeverQuiet:
            pass  # what came is handed over all the same; the next request's exchange says the line's state
        finally:
            self.on_pending(bytes(heard))

    def _read_echo(self, port: serial.Serial, frame: bytes) -> None:
        """``echo = true``: the request comes back first, as it leaves; it is given an answer's time
        (flush need not wait for the request to leave: a pty's does not)."""
        echoed = self._read(port, len(frame), self.answer_s + 2 * len(frame) * self.char_s)
        if echoed != frame:
            self._drain(port)
            raise PollError(f"echo = true, but the request {frame.hex()} came back as {echoed.hex() or 'nothing'}")

    def _refuse_echo(self, port: serial.Serial, frame: bytes, first: bytes) -> None:
        """Without ``echo = true``: an answer that begins as a short request does (10h) is read as far
        as the request goes; if it is the request, it is an echo (the meter's answer behind it is
        drained)."""
        if self.config.echo or first != frame[:1]:
            return
        heard = first + self._read(port, len(frame) - 1, len(frame) * self.char_s * 1.5 + 0.05)
        if heard == frame:
            self._drain(port)
            raise PollError(echo_error(frame))

    def _another_within(
        self,
        port: serial.Serial,
        window_ends: float,
        not_the_answer: Callable[[bytes], bool] | None,
        late_ack_possible: bool = False,
    ) -> bool:
        """Whether another slave's answer follows the answer taken (an E5h, or a whole long frame)
        within the answer window: a collision. A whole long frame ``not_the_answer`` passes over is
        none (in a search, a slow meter's late answer to an earlier read, said by its identification),
        and the window is looked at on (at most :data:`MOST_PASSED_OVER` such frames); any other byte
        is one (two slaves at once garble the line: no whole frame). Before, anything after the answer
        taken was a collision: a late read answer after a selection's E5h, or after the selected
        meter's own answer to the search's read, had that selection narrowed down for nothing, and at
        the last digit the meter it held was never found.

        ``late_ack_possible`` (the answer taken is a whole RSP_UD to a REQ_UD2): a lone E5h behind it
        (one byte E5h, then a line quiet for :attr:`quiet_s`) is no second answer to the read (an
        RSP_UD is what a REQ_UD2 asks for; two slaves at once garble the line) but a slow meter's late
        acknowledgement (a poll's SND_NKE or selection left unanswered, a selection's): handed to
        :attr:`on_pending`, as one heard before a request is, and the window looked at on. An E5h with
        any byte behind it stays a collision. Before, any E5h there was a collision: the selection
        was narrowed down for nothing, the E5h drained uncounted, and at the last digit the meter it
        held was never found."""
        for _ in range(MOST_PASSED_OVER):
            left = window_ends - self.monotonic()
            start = self._read(port, 1, left + self.char_s + 0.01) if left > 0 else b""
            if not start:
                return False
            if start[0] == ACK and late_ack_possible:
                if self._read(port, 1, self.quiet_s):
                    return True  # an E5h with bytes behind it: two slaves, or noise
                if self.on_pending is not None:
                    self.on_pending(start)
                continue
            if start[0] != 0x68 or not_the_answer is None:
                return True
            head = start + self._read(port, 3, 4 * self.char_s + 0.05)
            if len(head) < 4 or head[3] != 0x68 or head[1] != head[2]:
                return True
            rest = self._read(port, head[1] + 2, (head[1] + 2) * self.char_s * 1.5 + 0.05)
            if len(rest) != head[1] + 2 or not not_the_answer(head + rest):
                return True
        return True
