"""Serial framing of the IMST iM871A USB wM-Bus receiver: its host controller interface (HCI).

Sources: IMST GmbH, "WMBus Host Controller Interface, User Guide" for the iM871A/iM170A (the HCI
message format and the endpoint and message identifiers below), cross-checked against wmbusmeters'
``src/wmbus_im871a.cc``, which talks to the device. Every message on the serial line is::

    A5 | control (4 bits) + endpoint (4 bits) | message id | length | payload
       | [timestamp, 4 bytes LE] | [RSSI, 1 byte] | [FCS, CRC-16 2 bytes LE]

The control bits say which optional fields follow the payload. The FCS is CRC-16/IBM-SDLC (X.25:
reflected polynomial 0x1021, initial 0xFFFF, result inverted) over everything after the start byte.
A received radio telegram arrives as ``RADIOLINK_MSG_WMBUSMSG_IND`` (endpoint 2, message 3); its payload
is the telegram from the C-field on: the module checks and removes the link-layer CRCs and leaves the
L-field out, which :class:`ReceiverStreamParser` puts back (:func:`indication_telegram`) so the
telegram decodes with ``decode_telegram(..., crcs=False)``. Bytes copied from an iM871A's log, a
whole message or its payload, go through :func:`logged_telegram` (``aquami decode wmbus --receiver
im871a``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from construct import (
    BitsInteger,
    BitStruct,
    Checksum,
    Const,
    ConstructError,
    Flag,
    GreedyBytes,
    If,
    Int8ul,
    Int16ul,
    Int32ul,
    Prefixed,
    RawCopy,
    Struct,
    this,
)

from firmware_protocols.errors import DecodeError

START_OF_FRAME = 0xA5

# HCI endpoint identifiers.
DEVMGMT_ID = 0x01
RADIOLINK_ID = 0x02
RADIOLINKTEST_ID = 0x03
HWTEST_ID = 0x04

# Radio link endpoint message identifiers.
RADIOLINK_MSG_WMBUSMSG_REQ = 0x01  # host -> module: send a telegram
RADIOLINK_MSG_WMBUSMSG_RSP = 0x02
RADIOLINK_MSG_WMBUSMSG_IND = 0x03  # module -> host: a telegram was received
RADIOLINK_MSG_DATA_REQ = 0x04
RADIOLINK_MSG_DATA_RSP = 0x05

#: Highest message identifier per endpoint: a start byte followed by anything else is not a message.
MAX_MESSAGE_ID = {DEVMGMT_ID: 0x27, RADIOLINK_ID: 0x05, RADIOLINKTEST_ID: 0x07, HWTEST_ID: 0x02}


def crc16_x25(data: bytes) -> int:
    """CRC-16/IBM-SDLC (X.25), the HCI frame check sequence; check value 0x906E for ``b"123456789"``."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


# HCI "Control Field" (upper nibble) and "Endpoint ID" (lower nibble), one byte.
ControlAndEndpoint = BitStruct(
    "crc16_attached" / Flag,  # bit 7
    "rssi_attached" / Flag,  # bit 6
    "timestamp_attached" / Flag,  # bit 5
    "reserved" / Flag,  # bit 4: always 0
    "endpoint" / BitsInteger(4),
)

# HCI message: the fields the FCS covers (everything after the start of frame).
HciFields = Struct(
    "control" / ControlAndEndpoint,
    "message_id" / Int8ul,
    "payload" / Prefixed(Int8ul, GreedyBytes),  # length field, then the payload
    "timestamp" / If(this.control.timestamp_attached, Int32ul),  # module ticks
    "rssi" / If(this.control.rssi_attached, Int8ul),  # raw RSSI byte, larger is stronger
)

HciMessage = Struct(
    "start_of_frame" / Const(START_OF_FRAME, Int8ul),
    "fields" / RawCopy(HciFields),
    "fcs" / If(this.fields.value.control.crc16_attached, Checksum(Int16ul, crc16_x25, this.fields.data)),
)

# A telegram with its link-layer CRCs removed (EN 13757-4:2019 clause 12): the L-field, counting the
# bytes after itself, then the telegram from its C-field on. RADIOLINK_MSG_WMBUSMSG_IND's payload
# (HCI User Guide, radio link endpoint) is the telegram from its C-field on: this without its L-field.
TelegramWithoutCrcs = Prefixed(Int8ul, GreedyBytes)


@dataclass(frozen=True, slots=True)
class ReceivedTelegram:
    """A radio telegram the receiver passed on: L-field restored, link-layer CRCs already removed."""

    telegram: bytes
    rssi: int | None = None
    timestamp: int | None = None


def build_message(
    endpoint: int,
    message_id: int,
    payload: bytes,
    *,
    rssi: int | None = None,
    timestamp: int | None = None,
    crc: bool = True,
) -> bytes:
    """One HCI message as the module (or host) writes it to the serial line."""
    control = dict(
        crc16_attached=crc,
        rssi_attached=rssi is not None,
        timestamp_attached=timestamp is not None,
        reserved=False,
        endpoint=endpoint,
    )
    fields = dict(control=control, message_id=message_id, payload=payload, timestamp=timestamp, rssi=rssi)
    return bytes(HciMessage.build(dict(fields=dict(value=fields), fcs=None)))


def build_indication(
    telegram: bytes, *, rssi: int | None = None, timestamp: int | None = None, crc: bool = True
) -> bytes:
    """The ``WMBUSMSG_IND`` message for a telegram without link-layer CRCs (its L-field is left out)."""
    if not telegram or telegram[0] != len(telegram) - 1:
        raise ValueError("telegram must start with an L-field counting its bytes (link-layer CRCs removed)")
    return build_message(
        RADIOLINK_ID, RADIOLINK_MSG_WMBUSMSG_IND, telegram[1:], rssi=rssi, timestamp=timestamp, crc=crc
    )


def indication_telegram(payload: bytes) -> bytes:
    """A ``WMBUSMSG_IND``'s payload (the telegram from its C-field on, CRCs removed) as the telegram
    it carries, its L-field put back: what ``decode_telegram(..., crcs=False)`` takes."""
    if len(payload) > 255:
        raise DecodeError(f"iM871A telegram of {len(payload)} bytes after its L-field: an L-field counts at most 255")
    return bytes(TelegramWithoutCrcs.build(payload))


def logged_telegram(data: bytes) -> bytes:
    """The telegram in bytes copied from an iM871A's log: a whole HCI message (from its start byte
    A5, which no EN 13757-4 C-field is) that is a ``WMBUSMSG_IND``, or such a message's payload, the
    telegram from its C-field on. Either way its L-field is put back (:func:`indication_telegram`)."""
    if data[:1] != bytes([START_OF_FRAME]):
        return indication_telegram(data)
    fields = parse_message(data).fields.value
    if (fields.control.endpoint, fields.message_id) != (RADIOLINK_ID, RADIOLINK_MSG_WMBUSMSG_IND):
        raise DecodeError(
            f"iM871A HCI message of endpoint {fields.control.endpoint} message {fields.message_id:#04x}: not a "
            f"received telegram (RADIOLINK_MSG_WMBUSMSG_IND, endpoint {RADIOLINK_ID} message "
            f"{RADIOLINK_MSG_WMBUSMSG_IND:#04x})"
        )
    return indication_telegram(bytes(fields.payload))


def parse_message(data: bytes) -> Any:
    """One complete HCI message to its parsed container; :class:`DecodeError` if malformed."""
    try:
        parsed = HciMessage.parse(data)
    except ConstructError as error:
        raise DecodeError(f"iM871A HCI message: {error}") from None
    if len(data) != 1 + len(parsed.fields.data) + (2 if parsed.fcs is not None else 0):
        raise DecodeError("iM871A HCI message: trailing bytes after the message")
    return parsed


def _plausible_header(control: int, message_id: int) -> bool:
    endpoint = control & 0x0F
    return not control & 0x10 and 1 <= message_id <= MAX_MESSAGE_ID.get(endpoint, 0)


def _message_size(control: int, length: int) -> int:
    return 4 + length + (4 if control & 0x20 else 0) + (1 if control & 0x40 else 0) + (2 if control & 0x80 else 0)


_Verdict = Literal["take", "noise", "wait"]


class ReceiverStreamParser:
    """Cut a serial byte stream into HCI messages and hand back the received telegrams.

    Feed it bytes as they arrive, in any chunks. Bytes that cannot start a message (no start byte, an
    unknown endpoint or message id, a bad FCS) are dropped one at a time until the stream makes sense
    again, so garbage between messages costs only the garbage. Messages other than received
    telegrams (command responses) are counted in :attr:`other_messages`.

    A message without FCS cannot be checked, and noise that looks like its header would swallow the
    messages after it (four bytes of noise lost the next seven telegrams). So a candidate without FCS
    is taken only if

    * no message with an FCS has been seen on the stream (a module attaches it to all or to none),
      nor starts inside the candidate: else the candidate is noise;
    * the byte after it is a start byte, or the line has gone quiet after it (:meth:`resync`);
      else it is noise.

    Noise is dropped one byte at a time and the stream read again from the next start byte. With
    ``require_fcs=True`` (set the module to attach the CRC-16) candidates without FCS are always
    noise.
    """

    def __init__(self, *, require_fcs: bool = False) -> None:
        self.require_fcs = require_fcs
        self._buffer = bytearray()
        self.discarded_bytes = 0
        self.fcs_errors = 0
        self.other_messages = 0
        self.fcs_seen = False  # a message with a valid FCS came: from now on every message has one

    def feed(self, data: bytes) -> list[ReceivedTelegram]:
        self._buffer += data
        return self._scan(quiet=False)

    def _scan(self, *, quiet: bool) -> list[ReceivedTelegram]:
        received: list[ReceivedTelegram] = []
        buffer = self._buffer
        while buffer:
            start = buffer.find(START_OF_FRAME)
            if start < 0:
                self._discard(len(buffer))
                break
            if start:
                self._discard(start)
            if len(buffer) < 4:
                break
            if not _plausible_header(buffer[1], buffer[2]):
                self._discard(1)
                continue
            size = _message_size(buffer[1], buffer[3])
            if not buffer[1] & 0x80:
                verdict = self._without_fcs(size, quiet)
                if verdict == "wait":
                    break
                if verdict == "noise":
                    self._discard(1)
                    continue
            if len(buffer) < size:
                break
            try:
                message = parse_message(bytes(buffer[:size]))
            except DecodeError:
                self.fcs_errors += 1
                self._discard(1)
                continue
            del buffer[:size]
            if message.fcs is not None:
                self.fcs_seen = True
            fields = message.fields.value
            if fields.control.endpoint == RADIOLINK_ID and fields.message_id == RADIOLINK_MSG_WMBUSMSG_IND:
                telegram = indication_telegram(bytes(fields.payload))
                received.append(ReceivedTelegram(telegram, fields.rssi, fields.timestamp))
            else:
                self.other_messages += 1
        return received

    def _without_fcs(self, size: int, quiet: bool) -> _Verdict:
        """Whether the candidate without FCS at the buffer's start is to be taken ("take"), is noise,
        or cannot be told yet ("wait")."""
        buffer = self._buffer
        if self.require_fcs or self.fcs_seen:
            return "noise"
        if len(buffer) < size:
            return "wait"
        if len(buffer) == size and not quiet:
            return "wait"  # for the byte after it
        if len(buffer) > size and buffer[size] != START_OF_FRAME:
            return "noise"
        inside = self._message_with_fcs_inside(size, quiet)
        return "noise" if inside == "found" else inside

    def _message_with_fcs_inside(self, size: int, quiet: bool) -> Literal["found", "wait", "take"]:
        """Whether a message with a valid FCS starts inside the candidate of ``size`` bytes ("found"),
        may but has not come whole while the line is not quiet ("wait"), or none does ("take")."""
        buffer = self._buffer
        at = buffer.find(START_OF_FRAME, 1, size)
        while at > 0:
            if len(buffer) < at + 4:  # its header has not come whole
                if not quiet:
                    return "wait"
            elif buffer[at + 1] & 0x80 and _plausible_header(buffer[at + 1], buffer[at + 2]):
                end = at + _message_size(buffer[at + 1], buffer[at + 3])
                if end > len(buffer):
                    if not quiet:
                        return "wait"
                else:
                    try:
                        parse_message(bytes(buffer[at:end]))
                    except DecodeError:
                        pass
                    else:
                        return "found"
            at = buffer.find(START_OF_FRAME, at + 1, size)
        return "take"

    @property
    def waiting(self) -> int:
        """Bytes held for a message not yet whole, or not yet known to be one."""
        return len(self._buffer)

    def resync(self) -> list[ReceivedTelegram]:
        """The line has been quiet longer than a message takes: a message without FCS that ends the
        buffer is taken (no byte after it will come); a message still waited for never comes whole,
        and its first byte goes, what follows being read again. Without this, noise that looks like
        the header of a 255-byte message would hold back, and then swallow, the telegrams after it."""
        if not self._buffer:
            return []
        received = self._scan(quiet=True)
        if self._buffer:
            self._discard(1)
            received += self._scan(quiet=True)
        return received

    def _discard(self, count: int) -> None:
        del self._buffer[:count]
        self.discarded_bytes += count
