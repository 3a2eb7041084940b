"""Echo on a serial line: an RS-485 adapter or M-Bus level converter that hears its own request and
passes it back before the answer. A bus with ``echo = true`` reads it back (M-Bus: gateway.mbus_line;
Modbus RTU: pymodbus's ``handle_local_echo``); on one without, an answer that begins with the
request fails with a hint to set it."""

from __future__ import annotations

HINT = "echo? set echo = true"


def begins_with_request(heard: bytes, sent: bytes) -> bool:
    """Whether ``heard`` (what came back, as far as it was read) begins with the request ``sent``:
    all of it, or at least its first 5 bytes where less was heard."""
    seen = min(len(heard), len(sent))
    return bool(sent) and seen >= min(len(sent), 5) and heard[:seen] == sent[:seen]


def echo_error(sent: bytes) -> str:
    return f"the answer begins with the gateway's own request {sent.hex()}: {HINT}"


class EchoWatch:
    """pymodbus's ``trace_packet`` hook: the last request sent and what came back after it, up to
    the framer's first cut (it drops what it cannot take as a frame, and hands on the rest)."""

    def __init__(self) -> None:
        self.sent = b""
        self.heard = b""
        self._following = False

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.sent, self.heard, self._following = data, b"", True
        elif self._following:
            if data.startswith(self.heard):  # the receive buffer grew
                self.heard = data
            else:  # the framer cut it: what was heard before is the start
                self._following = False
        return data

    def error(self) -> str | None:
        """The echo error if the last answer began with the request, else None."""
        return echo_error(self.sent) if begins_with_request(self.heard, self.sent) else None
