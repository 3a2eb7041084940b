"""Wired M-Bus slaves for a :class:`simulators.serial_line.SerialLine`, built from the protocol package.

Each slave answers SND_NKE with E5h, REQ_UD2 with its RSP_UD (several telegrams in turn when
``telegrams`` > 1, repeating the last one when the master repeats its FCB), and a secondary-address
selection with E5h; two slaves selected at once collide, which garbles the line.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import (
    build_ack,
    build_rsp_ud,
    decode_frame,
    decode_master_frame,
    secondary_address_matches,
)
from firmware_protocols.records import DataRecord
from simulators.serial_line import Reply, SerialLine

MANUFACTURER, VERSION, MEDIUM = "ELS", 7, "water"


@dataclass
class MBusSlave:
    primary: int
    identification: str
    volume_m3: float
    telegrams: int = 1
    status: int = 0
    selected: bool = False
    last_fcb: bool | None = None
    current: int = 0
    requests: list[tuple[str, bool]] = field(default_factory=list)  # (function, FCB) as received
    drop_once_at: int | None = None  # stay silent, once, when about to send this telegram
    #: stored volumes sent after a one-telegram answer's own records (storage 1, 2, …): a long frame,
    #: as a meter that sends its month-end history does (24 of them: a 200-byte frame, 0.92 s at 2400 baud)
    history: int = 0
    #: the A-field of its RSP_UD, where it is not the address it was asked at (None): a device answering
    #: with another address than its own, which no configured meter's is
    answers_as: int | None = None

    def telegram(self, index: int, address: int) -> bytes:
        """The last telegram has the current volume; earlier ones flow and a stored (historic) volume."""
        if self.telegrams == 1:
            records = [
                (DataRecord("volume", "m3", self.volume_m3), "bcd8"),
                (DataRecord("flow", "m3/h", 0.25), "int32"),
            ]
            records += [
                (DataRecord("volume", "m3", round(self.volume_m3 - month, 3), storage=month), "bcd8")
                for month in range(1, self.history + 1)
            ]
        elif index < self.telegrams - 1:
            records = [(DataRecord("volume", "m3", round(self.volume_m3 - 10 - index, 3), storage=1), "bcd8")]
        else:
            records = [(DataRecord("volume", "m3", self.volume_m3), "bcd8")]
        return build_rsp_ud(
            address,
            self.identification,
            MANUFACTURER,
            VERSION,
            MEDIUM,
            access_no=index,
            status=self.status,
            records=records,
            more_records_follow=index < self.telegrams - 1,
        )


class MBusSlaves:
    def __init__(self, slaves: list[MBusSlave]):
        self.slaves = slaves
        self.frames = 0  # frames the master sent on the line

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        self.frames += 1
        try:
            request = decode_master_frame(frame)
        except DecodeError:
            return None
        function, address = request["function"], request["a_field"]
        if function == "SND_UD" and request.get("command") == "select":
            matching = [
                s
                for s in self.slaves
                if secondary_address_matches(
                    request["secondary_address"], s.identification, MANUFACTURER, VERSION, MEDIUM
                )
            ]
            for slave in self.slaves:
                slave.selected = slave in matching
            if not matching:
                return None
            if len(matching) > 1:
                return Reply(bytes([0xE5 & 0xC5, 0xE5 | 0x18]))  # two E5h on the wire at once: garbage
            return Reply(build_ack(), matching[0].primary)
        if address == 0xFD:
            targets = [s for s in self.slaves if s.selected]
        else:
            targets = [s for s in self.slaves if s.primary == address]
        if len(targets) != 1:
            return None
        slave = targets[0]
        slave.requests.append((function, bool(request.get("fcb"))))
        if function == "SND_NKE":
            slave.last_fcb, slave.current = None, -1
            return Reply(build_ack(), slave.primary)
        if function == "REQ_UD2":
            fcb = bool(request["fcb"])
            if slave.last_fcb is None or fcb != slave.last_fcb or slave.current < 0:
                slave.current = (slave.current + 1) % slave.telegrams  # a new request: the next telegram
            slave.last_fcb = fcb
            if slave.drop_once_at == slave.current:
                slave.drop_once_at = None
                return None
            answering_as = address if slave.answers_as is None else slave.answers_as
            return Reply(slave.telegram(slave.current, answering_as), slave.primary)
        return None


class SlowReads(MBusSlaves):
    """Every selection and SND_NKE acknowledged at once (and two selected at once collide at once),
    every RSP_UD ``late_by_s`` after its request. The line's later answers queue behind a late RSP_UD
    (a selection's E5h comes right after it): for a line of one meter; for several, see
    :class:`ReadsAnsweredLate`."""

    def __init__(self, slaves: list[MBusSlave], late_by_s: float):
        super().__init__(slaves)
        self.late_by_s = late_by_s

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        if reply is None or reply.data[:1] != b"\x68":  # an E5h, or two colliding: at once
            return reply
        return Reply(reply.data, reply.address, turnaround_s=self.late_by_s)


class ReadsAnsweredLate(MBusSlaves):
    """Every selection and SND_NKE acknowledged at once, every RSP_UD of the meters in ``slow`` (by
    identification; all of them when None) sent ``late_by_s`` after its request, the line free
    meanwhile (as a slow meter's is: it says nothing until it answers); the other meters' RSP_UD at
    once. Set :attr:`line` to the :class:`SerialLine` the slaves are on before the master talks."""

    def __init__(self, slaves: list[MBusSlave], late_by_s: float, slow: set[str] | None = None):
        super().__init__(slaves)
        self.late_by_s = late_by_s
        self.slow = {slave.identification for slave in slaves} if slow is None else slow
        self.line: SerialLine | None = None
        self._timers: list[threading.Timer] = []

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        reply = super().handle(frame, now)
        if reply is None or reply.data[:1] != b"\x68":  # an E5h, or two colliding: at once
            return reply
        if decode_frame(reply.data)["id"] not in self.slow:
            return reply
        assert self.line is not None, "ReadsAnsweredLate.line is not set"
        timer = threading.Timer(self.late_by_s, self.line.push, (reply.data, reply.address))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)
        return None

    def stop(self) -> None:
        """No late answer is sent after this."""
        for timer in self._timers:
            timer.cancel()
