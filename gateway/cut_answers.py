"""A Modbus answer that began but stopped short: said as such, not as "no answer".

pymodbus 3.16 waits for the rest of a frame that came in part (its RTU framer's "Short frame", its
TCP framer's MBAP length not yet there) until the request's timeout, and then says what it says of
silence, ``No response received``: a poll whose answer was cut was ``no answer from unit 5``, and a
technician checked the meter's wiring and address, where a cut frame is noise, a wrong baud rate or
timing on the line (on TCP, a device or Modbus gateway that stops mid-answer). The bytes came, and
:class:`CutWatch`, on pymodbus's ``trace_packet`` hook, keeps them: after a read that got no answer,
:meth:`CutWatch.cut_short` says ``answer cut short (7 of 25 bytes) from unit 5`` if an answer of
that unit (RTU) or that transaction (TCP) began, and how long it said it would be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from gateway.echo import begins_with_request

_MBAP_HEADER = 6  # transaction id, protocol id, length: the length counts the unit id and the PDU
#: the shortest answers: RTU, an exception (unit, function | 80h, code, CRC); TCP, the MBAP header,
#: unit, function | 80h, code
_SHORTEST = {"rtu": 5, "tcp": _MBAP_HEADER + 3}
_HINT = {
    "rtu": "noise, baud rate or timing on the line?",
    "tcp": "the device or a Modbus gateway on the way stops mid-answer?",
}


def answer_size(heard: bytes, sent: bytes, framing: Literal["rtu", "tcp"]) -> int | None:
    """The length the answer to the read ``sent`` that ``heard`` begins with says it has, 0 where
    too little of it came to tell, or None if ``heard`` does not begin an answer to it (another
    unit's, another transaction's, another function's, the request's echo)."""
    if not heard or not sent:
        return None
    if framing == "rtu":  # a serial line's echo (gateway.echo); a TCP answer's header may begin as its request's
        if len(sent) < 2 or heard[0] != sent[0] or begins_with_request(heard, sent):
            return None
        if len(heard) < 2:
            return 0
        if heard[1] == sent[1] | 0x80:
            return 5  # unit, function | 80h, exception code, CRC
        if heard[1] != sent[1]:
            return None
        return 0 if len(heard) < 3 else 5 + heard[2]  # unit, function, byte count, the bytes, CRC
    if len(sent) < 2 or heard[:2] != sent[: min(2, len(heard))]:
        return None
    if len(heard) < _MBAP_HEADER:
        return 0
    return _MBAP_HEADER + int.from_bytes(heard[4:6], "big")


class CutWatch:
    """pymodbus's ``trace_packet`` hook: the last request sent and the receive buffer since (what
    pymodbus holds of an answer not yet whole); ``then`` is the hook it passes the packets on to."""

    def __init__(self, framing: Literal["rtu", "tcp"], then: Callable[[bool, bytes], bytes] | None = None):
        self.framing = framing
        self.then = then
        self.sent = b""
        self.heard = b""

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.sent, self.heard = data, b""
        else:
            self.heard = data  # the receive buffer as it now stands
        return data if self.then is None else self.then(sending, data)

    def cut_short(self, unit_id: int) -> str | None:
        """After a read of ``unit_id`` that got no answer: why, if its answer began and stopped."""
        size = answer_size(self.heard, self.sent, self.framing)
        got = len(self.heard)
        if size is None or (size and got >= size):  # none of its answer, or all of it (not this watch's)
            return None
        of = f"{got} of {size}" if size else f"{got} of at least {_SHORTEST[self.framing]}"
        return f"answer cut short ({of} bytes) from unit {unit_id} ({_HINT[self.framing]})"
