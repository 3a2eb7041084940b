"""Modbus answers that come after the gateway stopped waiting for them: counted, and said once an episode.

A meter that answers after the bus's ``timeout_s`` every time fails every poll as ``no answer from
unit 5``, like a meter that is not there, while the line carries its answers: the cure is a longer
``timeout_s``, and nothing said so (pymodbus's line for such an answer is dropped from the log:
gateway.modbus_transport). Now each late answer counts in its bus's ``late_answers`` (health
status), and the first of an episode is a warning naming the meter, its unit and the timeout.

A late answer is a whole Modbus answer to a read (function 03h or 04h, or its exception) that is
not the answer to the request in flight: it came while none was (after the attempt gave up: the
transport keeps the failed attempt's connection listening until the next attempt opens its own),
or, on RTU, from another unit than the one asked, or, on TCP, with the transaction id of an earlier
request (one with an id never sent is a wrong answer, not a late one: a longer timeout does not
cure it, and the warning said to raise it). Its unit is in the frame. Not heard: an answer that
comes once the bus is closed or its next attempt has begun on a new connection (TCP), and, on RTU,
one that comes during the same unit's retry, which takes it as its own (RTU frames carry no
transaction id).

Its episodes are not :mod:`gateway.episodes`': nothing says that a meter has stopped answering late
(an answer in time is not heard here), so an episode ends after :data:`EPISODE_QUIET_S` without a
late answer, and nothing is said at its end; the counts say how many came.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from pymodbus.framer import FramerRTU

from gateway.config import ModbusRtuBusConfig, ModbusTcpBusConfig

log = logging.getLogger(__name__)

#: A unit's late answers are one episode until none has come for this long; the next is said again.
EPISODE_QUIET_S = 3600.0
_READ_ANSWERS = (0x03, 0x04)
_MBAP_HEADER = 6  # transaction id, protocol id, length: the length counts the unit id and the PDU
#: TCP: the transaction ids a watch remembers as asked (pymodbus counts them up, one a request): a
#: late answer is to one of the last few, and 256 is minutes of requests on a slow bus
_ASKED_KEPT = 256


def _pdu_size(function: int, byte_count: int) -> int | None:
    """The PDU's length (function code onwards) of an answer to a read, or None for any other."""
    if function & 0x7F not in _READ_ANSWERS:
        return None
    return 2 if function & 0x80 else 2 + byte_count


def rtu_answer(heard: bytes) -> tuple[int, int] | None:
    """The unit and length of the whole RTU answer to a read (its CRC right) that ``heard`` begins
    with, or None."""
    if len(heard) < 5:
        return None
    pdu = _pdu_size(heard[1], heard[2])
    if pdu is None or len(heard) < pdu + 3:
        return None
    size = pdu + 3  # unit, PDU, CRC
    if FramerRTU.compute_CRC(heard[: size - 2]) != int.from_bytes(heard[size - 2 : size], "big"):
        return None
    return heard[0], size


def tcp_answer(heard: bytes) -> tuple[int, int, int] | None:
    """The transaction id, unit and length of the whole Modbus TCP answer to a read that ``heard``
    begins with, or None."""
    if len(heard) < _MBAP_HEADER + 3 or heard[2:4] != b"\0\0":
        return None
    size = _MBAP_HEADER + int.from_bytes(heard[4:6], "big")
    pdu = _pdu_size(heard[7], heard[8])
    if pdu is None or size != _MBAP_HEADER + 1 + pdu or len(heard) < size:
        return None
    return int.from_bytes(heard[0:2], "big"), heard[6], size


class LateAnswerWatch:
    """pymodbus's ``trace_packet`` hook on a Modbus client: it calls ``on_late`` with the unit of each
    late answer heard (once, however often pymodbus hands it the same receive buffer), then passes
    the packets on to ``then``. The transport says when a request is in flight (:attr:`waiting`), and
    when an answer cannot be late (:meth:`mute`: a read cancelled as the gateway stops)."""

    def __init__(
        self,
        framing: Literal["rtu", "tcp"],
        on_late: Callable[[int], None],
        then: Callable[[bool, bytes], bytes] | None = None,
    ):
        self.framing = framing
        self.on_late = on_late
        self.then = then
        self.waiting = False
        self.sent = b""
        self._muted = False
        self._counted: set[bytes] = set()  # the late frames counted since the last request
        # TCP: the transaction ids of the requests sent, the latest _ASKED_KEPT, oldest first
        self._asked: dict[int, None] = {}

    def mute(self) -> None:
        """Count nothing until the next request: what comes is an answer to a read abandoned, not
        a late one."""
        self._muted = True

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.sent = data
            self._muted = False
            self._counted.clear()
            if self.framing == "tcp" and len(data) >= 2:
                transaction = int.from_bytes(data[:2], "big")
                self._asked.pop(transaction, None)
                self._asked[transaction] = None
                if len(self._asked) > _ASKED_KEPT:
                    del self._asked[next(iter(self._asked))]
        elif not self._muted:
            self._look(data)
        return data if self.then is None else self.then(sending, data)

    def _look(self, heard: bytes) -> None:
        if self.framing == "rtu":
            answer = rtu_answer(heard)
            if answer is None:
                return
            unit, size = answer
            late = not self.waiting or not self.sent or unit != self.sent[0]
        else:
            tcp = tcp_answer(heard)
            if tcp is None:
                return
            transaction, unit, size = tcp
            awaited = self.waiting and len(self.sent) >= 2 and transaction == int.from_bytes(self.sent[:2], "big")
            # an answer to a request of ours, not the one awaited: one with a transaction id never
            # sent is no late answer but a wrong one (a corrupted header, a device or gateway that
            # mangles ids), which a longer timeout_s does not cure; pymodbus's own line says it
            late = not awaited and transaction in self._asked
        frame = heard[:size]
        if late and frame not in self._counted:
            self._counted.add(frame)
            self.on_late(unit)


class LateAnswers:
    """One bus's late answers: each is counted (:attr:`count`, and ``on_late`` with its unit, for the
    health status), and the first of each unit's episode is a warning naming the meter, its unit and
    the bus's timeout."""

    def __init__(
        self,
        bus: ModbusTcpBusConfig | ModbusRtuBusConfig,
        on_late: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        quiet_s: float = EPISODE_QUIET_S,
    ):
        self.bus = bus
        self.on_late = on_late
        self.monotonic = monotonic
        self.quiet_s = quiet_s
        self.count = 0
        self._last: dict[int, float] = {}  # each unit's last late answer, on the monotonic clock

    def heard(self, unit: int) -> None:
        self.count += 1
        now = self.monotonic()
        last = self._last.get(unit)
        self._last[unit] = now
        if last is None or now - last > self.quiet_s:
            log.warning("%s", self.hint(unit))
        if self.on_late is not None:
            self.on_late(unit)

    def hint(self, unit: int) -> str:
        meters = [m.meter_id for m in self.bus.meters if m.unit_id == unit]
        who = f"{', '.join(meters)} on {self.bus.name}" if meters else self.bus.name
        return (
            f"{who}: unit {unit} answered after the bus's {self.bus.timeout_s:g} s timeout, so its polls "
            f"fail as 'no answer' though it answers: raise the bus's timeout_s"
        )
