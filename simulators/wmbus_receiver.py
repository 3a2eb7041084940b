"""A USB wireless M-Bus receiver (IMST iM871A) hearing simulated meters: its serial stream on a pty.

The gateway opens :attr:`WMBusReceiverSimulator.port` with pyserial at 57600 baud 8N1, the module's
default, and reads what the module writes: one HCI message per received telegram,
``RADIOLINK_MSG_WMBUSMSG_IND`` (endpoint 02h, message 03h) with the telegram from its C-field on
(link-layer CRCs checked and removed by the module), then the 32-bit timestamp, the RSSI byte and the
CRC-16 frame check (``firmware_protocols.wmbus.receiver.build_indication``; the framing is described
there, after IMST's "WMBus Host Controller Interface" user guide). Bytes leave no faster than the
line's baud rate allows, telegram after telegram (:meth:`simulators.serial_line.SerialLine.push`).

Each meter sends every ``interval_s`` (real seconds), the first time at a staggered offset, with a
small per-meter jitter as OMS asks of meters (so two meters do not collide on every transmission).

The host side of the HCI that a driver needs to start talking is answered too: ``PING_REQ`` (01h),
``SET_CONFIG_REQ`` (03h, status OK; the link mode is not simulated: every meter is heard) and
``GET_DEVICEINFO_REQ`` (0Fh: module type 33h iM871A, device mode, firmware and HCI versions, the
device id big-endian, as wmbusmeters reads it). Other host messages get no answer.

Wire faults (:mod:`simulators.wire_faults`) apply per telegram, the meter's identification as an
integer being its address: ``absent`` and ``no_reply`` lose the telegram (out of range), ``bad_checksum``
spoils the CRC-16 (the reader drops the message), ``truncated``/``garbled`` spoil bytes, ``slow``
delays it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aquami.clock import Clock, utc_now
from firmware_protocols.errors import DecodeError
from firmware_protocols.wmbus.receiver import DEVMGMT_ID, build_indication, build_message, parse_message
from simulators.serial_line import LineSettings, Reply, SerialLine
from simulators.wire_faults import WireFaultPlan
from simulators.wmbus_meter import WMBusMeter

log = logging.getLogger(__name__)

#: The iM871A's USB serial port: 57600 baud, 8 data bits, no parity, one stop bit.
RECEIVER_LINE = LineSettings(baudrate=57600, parity="N", idle_chars=3.5, min_idle_s=0.0)

PING_REQ, PING_RSP = 0x01, 0x02
SET_CONFIG_REQ, SET_CONFIG_RSP = 0x03, 0x04
GET_DEVICEINFO_REQ, GET_DEVICEINFO_RSP = 0x0F, 0x10
MODULE_TYPE_IM871A = 0x33
STATUS_OK = 0x00
#: How far each send of a meter strays from its interval, as a share of it (OMS asks meters to vary
#: their send times, so that two do not collide on every transmission).
SEND_JITTER = 0.02


def next_send(due: float, interval_s: float, rng: random.Random) -> float:
    """When a meter that was due at ``due`` sends next: its interval, give or take :data:`SEND_JITTER`.
    Each send strays from the last, not from a fixed grid, so the meter's phase wanders (a random
    walk), as a meter's own clock would."""
    return due + interval_s * rng.uniform(1 - SEND_JITTER, 1 + SEND_JITTER)


def rssi_byte(meter: WMBusMeter) -> int:
    """A steady raw RSSI per meter (the module's byte; larger is stronger)."""
    return 0x30 + zlib.crc32(meter.identification.encode()) % 0x50


@dataclass
class IM871AHost:
    """The module's answers to its host (a :class:`~simulators.serial_line.LineDevice`)."""

    device_id: int = 0x00A5B0C1
    firmware_version: int = 0x01
    hci_version: int = 0x01
    turnaround_s: float = 0.002

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        try:
            message = parse_message(frame)
        except DecodeError:
            return None
        fields = message.fields.value
        if fields.control.endpoint != DEVMGMT_ID:
            return None
        msg = fields.message_id
        if msg == PING_REQ:
            return self._reply(PING_RSP, b"")
        if msg == SET_CONFIG_REQ:
            return self._reply(SET_CONFIG_RSP, bytes([STATUS_OK]))
        if msg == GET_DEVICEINFO_REQ:
            info = bytes([MODULE_TYPE_IM871A, 0x00, self.firmware_version, self.hci_version])
            return self._reply(GET_DEVICEINFO_RSP, info + self.device_id.to_bytes(4, "big"))
        return None

    def _reply(self, message_id: int, payload: bytes) -> Reply:
        return Reply(build_message(DEVMGMT_ID, message_id, payload), None, self.turnaround_s)


@dataclass
class WMBusReceiverSimulator:
    """Meters in radio range of one iM871A; the gateway opens :attr:`port`."""

    meters: Sequence[WMBusMeter]
    settings: LineSettings = RECEIVER_LINE
    faults: WireFaultPlan | None = None
    clock: Clock = utc_now
    seed: int = 0
    host: IM871AHost = field(default_factory=IM871AHost)

    def __post_init__(self) -> None:
        ids = [m.identification for m in self.meters]
        if len(set(ids)) != len(ids):
            raise ValueError("two wM-Bus meters share an identification in one receiver's range")
        self.line = SerialLine(self.host, self.settings, self.faults, self.clock)
        self.port = self.line.port
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def start(self) -> WMBusReceiverSimulator:
        self.line.start()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"wmbus-receiver {self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.line.stop()

    def __enter__(self) -> WMBusReceiverSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def transmit(self, meter: WMBusMeter) -> bytes:
        """Let ``meter`` send now: the HCI message the receiver writes (also returned, for tests)."""
        telegram = meter.telegram(self.clock())
        ticks = int((time.monotonic() - self._t0) * 1000) & 0xFFFFFFFF
        message = build_indication(telegram, rssi=rssi_byte(meter), timestamp=ticks)
        self.line.push(message, meter.address)
        self.sent += 1
        return message

    def _run(self) -> None:
        rng = random.Random(self.seed)
        n = len(self.meters)
        due = [self._t0 + m.interval_s * (i + 1) / (n + 1) for i, m in enumerate(self.meters)]
        while not self._stop.is_set() and n:
            i = min(range(n), key=due.__getitem__)
            if self._stop.wait(max(0.0, due[i] - time.monotonic())):
                break
            meter = self.meters[i]
            try:
                self.transmit(meter)
            except Exception:  # a meter bug must not silence the others
                log.exception("wM-Bus meter %s failed to send", meter.meter_id)
            due[i] = next_send(due[i], meter.interval_s, rng)
