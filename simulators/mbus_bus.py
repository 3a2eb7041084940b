"""Meters on one wired M-Bus, behind a pseudo-terminal at the bus' baud rate (2400 8E1 by default).

The master (a gateway, or a technician's tool) opens :attr:`MBusSimulator.port` with pyserial. Each
frame it writes goes, once the line falls silent, to every meter it reaches (EN 13757-2 clause 5.4):
its primary address, FDh for the meter(s) selected by secondary address, FEh for all (all answer),
FFh for all (none answers). A frame whose checksum, length or stop byte is wrong is ignored by every
meter, as a slave does with a transmission error.

Collisions: when more than one meter answers, their answers overlap on the wire. The M-Bus slave
signals a 0 (space) by drawing extra current, so the master sees a 0 wherever any slave sends one:
the bit streams (start bit, 8 data bits, parity, stop bits) combine by AND, each offset by its
meter's own turnaround, and the master's UART reads what results, each character when it starts
(answers far apart arrive with the silence between them). Two E5h from meters a few bit
times apart come out as bytes that are not one clean E5h: that is how a master's wildcard search
learns that more than one meter matched (EN 13757-3 Annex E).

Wire faults (:mod:`simulators.wire_faults`) act per meter, with its identification number (secondary
address) as an integer as the fault's address, as on the wM-Bus: a primary address does not name one
meter (unconfigured meters share 0, and a master may change it with CI 51h). ``absent`` is decided
once per request for each meter the request reaches, with the rule's probability and limit, and
logged: an absent meter hears nothing (and does not change state). The other faults spoil that
meter's answer before it meets the others' on the wire. ``bad_checksum`` corrupts the checksum byte
(E5h, which has none, is sent as is).

What a technician does to a bus, for a master to cope with: :meth:`MBusBus.exchange` takes a meter
off the bus and puts a new one in its place at its primary address (a meter exchange), and
:meth:`MBusBus.swap_primary_addresses` has two meters answer at each other's (addresses set anew by
hand): a master that polls by primary address gets the other meter's answer, its identification the
only sign.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aquami.clock import Clock, utc_now
from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import decode_master_frame, link
from simulators.mbus_slave import CI_SELECTION, Addressing, MBusWaterMeter
from simulators.serial_line import LineSettings, Reply, SerialLine
from simulators.wire_faults import PRESENT_KINDS, WireFaultPlan

log = logging.getLogger(__name__)

#: EN 13757-2: 2400 baud is the usual M-Bus speed; 8 data bits, even parity, one stop bit. A slave
#: decides a frame is complete from its length field, so a short idle time ends a request.
MBUS_LINE = LineSettings(baudrate=2400, parity="E", idle_chars=3.0, min_idle_s=0.0)


def mbus_line(baudrate: int = 2400) -> LineSettings:
    return LineSettings(baudrate=baudrate, parity="E", idle_chars=3.0, min_idle_s=0.0)


def corrupt_mbus_checksum(frame: bytes) -> bytes:
    """Flip the checksum byte (second to last) of a short or long frame; E5h has none."""
    if len(frame) >= 5 and frame[-1] == link.STOP:
        return frame[:-2] + bytes([frame[-2] ^ 0xFF]) + frame[-1:]
    return frame


def _char_bits(byte: int, settings: LineSettings) -> list[int]:
    data = [(byte >> i) & 1 for i in range(settings.bytesize)]
    parity = [] if settings.parity == "N" else [(sum(data) + (settings.parity == "O")) % 2]
    return [0, *data, *parity] + [1] * settings.stopbits


def collide(answers: Sequence[tuple[int, bytes]], settings: LineSettings) -> bytes:
    """What a master's UART reads when answers (``(start offset in bit times, bytes)``) overlap."""
    return bytes(byte for _, byte in collide_chars(answers, settings))


def collide_chars(answers: Sequence[tuple[int, bytes]], settings: LineSettings) -> list[tuple[int, int]]:
    """The characters a master's UART reads from overlapping answers, each with the bit time it starts at.

    The line idles at 1 (mark); a 0 from any sender wins. The UART waits for a start bit, samples a
    character's bits, and waits for the next start bit after it; parity errors cannot be shown on a
    pty, so the character's data bits are what it delivers.
    """
    bpc = settings.bits_per_char
    length = max(offset + len(data) * bpc for offset, data in answers) + bpc
    level = [1] * length
    for offset, data in answers:
        for k, byte in enumerate(data):
            for j, bit in enumerate(_char_bits(byte, settings)):
                level[offset + k * bpc + j] &= bit
    out: list[tuple[int, int]] = []
    i = 0
    while i < length:
        if level[i] == 0:
            out.append((i, sum(level[i + 1 + j] << j for j in range(settings.bytesize))))
            i += bpc
        else:
            i += 1
    return out


@dataclass
class MBusBus:
    """The meters on one M-Bus segment: a :class:`~simulators.serial_line.LineDevice`."""

    meters: Sequence[MBusWaterMeter]
    settings: LineSettings = MBUS_LINE
    faults: WireFaultPlan | None = None

    def __post_init__(self) -> None:
        self.meters = list(self.meters)  # (a meter exchange replaces one)
        self._lock = threading.Lock()  # a request handled, or the meters changed by a technician: one at a time
        #: the requests heard whole, counted by (function, A-field): what the polls cost the bus
        self.requests: Counter[tuple[str, int]] = Counter()
        self._check_addresses()

    def _check_addresses(self) -> None:
        addresses = [m.primary_address for m in self.meters if m.primary_address != link.ADDRESS_UNCONFIGURED]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two meters share a primary address on one M-Bus")
        secondaries = [(m.identification, m.manufacturer, m.version, m.medium) for m in self.meters]
        if len(set(secondaries)) != len(secondaries):
            raise ValueError("two meters share a secondary address on one M-Bus")

    def _present(self, meters: Iterable[MBusWaterMeter], now: datetime) -> list[MBusWaterMeter]:
        """The meters a request reaches that are there to hear it (``absent`` decided once each)."""
        if self.faults is None:
            return list(meters)
        return [m for m in meters if not self.faults.absent(m.fault_address, now)]

    def _reached(self, request: dict[str, object], now: datetime) -> list[tuple[MBusWaterMeter, Addressing]]:
        address = request.get("a_field")
        if address == link.ADDRESS_NETWORK_LAYER:
            if request.get("ci_field") == CI_SELECTION and request.get("function") == "SND_UD":
                selection = request["secondary_address"]
                assert isinstance(selection, dict)
                return [(m, "secondary") for m in self._present(self.meters, now) if m.select(selection)]
            return [(m, "secondary") for m in self._present([m for m in self.meters if m.selected], now)]
        if address in (link.ADDRESS_BROADCAST_REPLY, link.ADDRESS_BROADCAST_NO_REPLY):
            return [(m, "broadcast") for m in self._present(self.meters, now)]
        return [(m, "primary") for m in self._present([m for m in self.meters if m.primary_address == address], now)]

    def _by_identification(self, identification: str) -> MBusWaterMeter:
        for meter in self.meters:
            if meter.identification == identification:
                return meter
        raise ValueError(f"no meter with identification {identification} on this M-Bus")

    def exchange(self, identification: str, new: MBusWaterMeter) -> MBusWaterMeter:
        """The meter ``identification`` taken off the bus and ``new`` put in its place, at its primary
        address (a meter exchange: the new one set to the old one's address); returns the old one."""
        with self._lock:
            old = self._by_identification(identification)
            new.primary_address = old.primary_address
            meters = [new if meter is old else meter for meter in self.meters]
            before, self.meters = self.meters, meters
            try:
                self._check_addresses()
            except ValueError:
                self.meters = before
                raise
            return old

    def swap_primary_addresses(self, first: str, second: str) -> None:
        """The meters ``first`` and ``second`` (by identification) each set to the other's primary address."""
        with self._lock:
            one, other = self._by_identification(first), self._by_identification(second)
            one.primary_address, other.primary_address = other.primary_address, one.primary_address

    def handle(self, frame: bytes, now: datetime) -> Reply | None:
        with self._lock:
            return self._handle(frame, now)

    def _handle(self, frame: bytes, now: datetime) -> Reply | None:
        try:
            request = decode_master_frame(frame)
        except DecodeError:
            return None  # a transmission error: every slave ignores the frame
        self.requests[request["function"], request["a_field"]] += 1
        answers: list[tuple[int, bytes, MBusWaterMeter]] = []
        for meter, addressing in self._reached(request, now):
            answer = meter.receive(request, addressing, now)
            if request.get("a_field") == link.ADDRESS_BROADCAST_NO_REPLY or answer is None:
                continue
            bits = meter.turnaround_bits
            if self.faults is not None:
                outcome = self.faults.apply(answer, meter.fault_address, now, corrupt_mbus_checksum, PRESENT_KINDS)
                if not outcome.reply:
                    continue
                answer = outcome.reply
                bits += round(outcome.delay_s * self.settings.baudrate)
            answers.append((bits, answer, meter))
        if not answers:
            return None
        first = min(bits for bits, _, _ in answers)
        turnaround_s = first / self.settings.baudrate
        if len(answers) == 1:
            return Reply(answers[0][1], answers[0][2].fault_address, turnaround_s, corrupt_mbus_checksum)
        offsets = _distinct([bits - first for bits, _, _ in answers])
        log.debug("collision of %d answers on the M-Bus", len(answers))
        chars = collide_chars(list(zip(offsets, [a for _, a, _ in answers], strict=True)), self.settings)
        starts = tuple(bit / self.settings.baudrate for bit, _ in chars)  # the silences between answers stay
        return Reply(bytes(byte for _, byte in chars), None, turnaround_s, char_starts_s=starts)


def _distinct(offsets: list[int]) -> list[int]:
    """No two senders are ever bit-aligned on a real bus: nudge equal offsets apart by one bit."""
    seen: set[int] = set()
    out = []
    for offset in offsets:
        while offset in seen:
            offset += 1
        seen.add(offset)
        out.append(offset)
    return out


@dataclass
class MBusSimulator:
    """An M-Bus segment on a pty (the gateway opens :attr:`port`), e.g. 2400 baud 8E1."""

    meters: Sequence[MBusWaterMeter]
    settings: LineSettings = MBUS_LINE
    faults: WireFaultPlan | None = None
    clock: Clock = utc_now
    bus: MBusBus = field(init=False)

    def __post_init__(self) -> None:
        self.bus = MBusBus(self.meters, self.settings, self.faults)
        # The bus applies the wire faults per meter (collisions need each answer before they meet).
        self.line = SerialLine(self.bus, self.settings, None, self.clock)
        self.port = self.line.port

    def exchange(self, identification: str, new: MBusWaterMeter) -> MBusWaterMeter:
        """:meth:`MBusBus.exchange` on this segment."""
        return self.bus.exchange(identification, new)

    def swap_primary_addresses(self, first: str, second: str) -> None:
        """:meth:`MBusBus.swap_primary_addresses` on this segment."""
        self.bus.swap_primary_addresses(first, second)

    def start(self) -> MBusSimulator:
        self.line.start()
        return self

    def stop(self) -> None:
        self.line.stop()

    def __enter__(self) -> MBusSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
