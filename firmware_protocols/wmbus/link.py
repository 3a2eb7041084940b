"""Data link layer of EN 13757-4: the link header and the CRC blocks of frame formats A and B.

A radio telegram is ``L C M A`` followed by the CI field and what it introduces. On air the link layer
splits it into blocks, each closed by a CRC-16 (sent most significant byte first):

* **Format A** (EN 13757-4:2019 clause 12, "Frame format A"): block 1 is the 10 bytes ``L C M A``;
  every following block holds 16 bytes, the last one what is left. The L-field counts the bytes after itself
  *without* the CRCs.
* **Format B** (EN 13757-4:2019 clause 12, "Frame format B"): the first 126 bytes (``L C M A`` and up
  to 116 more) share one CRC; whatever follows forms block 3 with its own CRC. The L-field counts the bytes after
  itself *including* the CRCs.

Most receivers strip the CRCs and hand over the telegram with an L-field counting the bytes that
remain; :func:`unframe` accepts all three and says which it saw.
"""

from __future__ import annotations

from typing import Literal

from construct import Int8ul, Struct

from firmware_protocols.mbus.header import Identification, Manufacturer, Medium
from firmware_protocols.wmbus.crc import crc16_en13757
from firmware_protocols.wmbus.errors import CrcError, DecodeError, TruncatedTelegramError

FrameFormat = Literal["A", "B"]

# EN 13757-4:2019 clause 12 (data link layer): L-field, C-field, M-field (12.5.5), A-field (12.5.6).
# The A-field of a wireless telegram is identification, version and device type (EN 13757-7:2018 7.5).
LinkHeader = Struct(
    "length" / Int8ul,  # L-field
    "c_field" / Int8ul,  # C-field: 0x44 SND_NR, 0x46 SND_IR, 0x08 RSP_UD, ...
    "manufacturer" / Manufacturer,  # M-field
    "id" / Identification,  # A-field: identification number
    "version" / Int8ul,  # A-field: version
    "medium" / Medium,  # A-field: device type
)
LINK_HEADER_SIZE = 10

#: Data bytes per block after the first (format A).
FORMAT_A_BLOCK_SIZE = 16
#: Bytes covered by the first CRC of format B (block 1 and block 2).
FORMAT_B_FIRST_PART = 126
#: Largest L-field: a telegram has at most 255 bytes after the L-field.
MAX_L_FIELD = 255


def _crc_bytes(data: bytes) -> bytes:
    return crc16_en13757(data).to_bytes(2, "big")


def _check(block: bytes, received: bytes, number: int, count: int, frame_format: FrameFormat) -> None:
    expected = crc16_en13757(block)
    got = int.from_bytes(received, "big")
    if expected != got:
        raise CrcError(
            f"link-layer CRC error in block {number} of {count} (format {frame_format}): "
            f"computed {expected:04X}, received {got:04X}"
        )


def format_a_size(l_field: int) -> int:
    """Bytes on air of a format A telegram with this L-field, CRCs included."""
    after_first = max(l_field - (LINK_HEADER_SIZE - 1), 0)
    blocks = 1 + -(-after_first // FORMAT_A_BLOCK_SIZE)
    return 1 + l_field + 2 * blocks


def strip_format_a(data: bytes) -> bytes:
    """A format A telegram with CRCs to the telegram without them; :class:`CrcError` names the block."""
    size = format_a_size(data[0]) if data else 0
    if not data or len(data) != size:
        raise TruncatedTelegramError(f"format A telegram: expected {size} bytes with CRCs, got {len(data)}")
    count = (size - 1 - data[0]) // 2
    _check(data[:LINK_HEADER_SIZE], data[LINK_HEADER_SIZE : LINK_HEADER_SIZE + 2], 1, count, "A")
    parts = [data[:LINK_HEADER_SIZE]]
    position = LINK_HEADER_SIZE + 2
    for number in range(2, count + 1):
        end = min(position + FORMAT_A_BLOCK_SIZE, len(data) - 2)
        block = data[position:end]
        _check(block, data[end : end + 2], number, count, "A")
        parts.append(block)
        position = end + 2
    return b"".join(parts)


def add_format_a(frame: bytes) -> bytes:
    """A telegram without CRCs (its L-field counting its own bytes) to format A with CRCs."""
    parts = [frame[:LINK_HEADER_SIZE], _crc_bytes(frame[:LINK_HEADER_SIZE])]
    for start in range(LINK_HEADER_SIZE, len(frame), FORMAT_A_BLOCK_SIZE):
        block = frame[start : start + FORMAT_A_BLOCK_SIZE]
        parts += [block, _crc_bytes(block)]
    return b"".join(parts)


def strip_format_b(data: bytes) -> bytes:
    """A format B telegram with CRCs to the telegram without them, its L-field recounted."""
    if not data or len(data) != data[0] + 1:
        announced = data[0] + 1 if data else 1
        raise TruncatedTelegramError(f"format B telegram: L-field announces {announced} bytes, got {len(data)}")
    if len(data) <= FORMAT_B_FIRST_PART + 2:
        _check(data[:-2], data[-2:], 1, 1, "B")
        body = data[:-2]
    else:
        if len(data) < FORMAT_B_FIRST_PART + 2 + 3:
            raise DecodeError(f"format B telegram of {len(data)} bytes: block 3 too short for its CRC")
        _check(data[:FORMAT_B_FIRST_PART], data[FORMAT_B_FIRST_PART : FORMAT_B_FIRST_PART + 2], 1, 2, "B")
        _check(data[FORMAT_B_FIRST_PART + 2 : -2], data[-2:], 2, 2, "B")
        body = data[:FORMAT_B_FIRST_PART] + data[FORMAT_B_FIRST_PART + 2 : -2]
    return bytes([len(body) - 1]) + body[1:]


def add_format_b(frame: bytes) -> bytes:
    """A telegram without CRCs to format B with CRCs, its L-field recounted to include them."""
    crcs = 2 if len(frame) + 2 <= FORMAT_B_FIRST_PART + 2 else 4
    if len(frame) - 1 + crcs > MAX_L_FIELD:
        raise ValueError(f"telegram of {len(frame)} bytes too long for format B")
    body = bytes([len(frame) - 1 + crcs]) + frame[1:]
    if crcs == 2:
        return body + _crc_bytes(body)
    first, rest = body[:FORMAT_B_FIRST_PART], body[FORMAT_B_FIRST_PART:]
    return first + _crc_bytes(first) + rest + _crc_bytes(rest)


def unframe(
    data: bytes, crcs: bool | None = None, frame_format: FrameFormat | None = None
) -> tuple[bytes, FrameFormat | None, bool]:
    """A telegram as received to ``(telegram without CRCs, format if known, whether CRCs were present)``.

    With ``crcs=None`` the length decides: ``format_a_size(L)`` bytes is format A with CRCs, ``L + 1``
    bytes format B with CRCs (EN 13757-4:2019 clause 12), and a CRC that fails is a
    :class:`CrcError`. A telegram whose CRCs a receiver removed also has ``L + 1`` bytes, and nothing
    tells it from a format B telegram the radio garbled: taken for one, a garbled telegram's two CRC
    bytes were read as data, and one bit of noise in a volume changed the reading. So it is taken as
    CRC-less only when told (``crcs=False``), or when its length fits neither format's CRC layout.
    """
    if len(data) < LINK_HEADER_SIZE + 1:
        raise TruncatedTelegramError(
            f"telegram of {len(data)} bytes: shorter than the link header and CI field (11 bytes)"
        )
    l_field = data[0]
    if crcs is not False:
        if frame_format != "B" and len(data) == format_a_size(l_field):
            return strip_format_a(data), "A", True
        if frame_format != "A" and len(data) == l_field + 1 and (crcs or _fits_format_b(len(data))):
            try:
                return strip_format_b(data), "B", True
            except CrcError as error:
                if crcs:
                    raise
                raise CrcError(f"{error}; if a receiver removed the CRCs, say so (crcs=False, --no-crcs)") from None
    if crcs is not True and len(data) == l_field + 1:
        return data, frame_format, False
    raise TruncatedTelegramError(_length_mismatch(data, crcs, frame_format))


def _fits_format_b(size: int) -> bool:
    """Whether ``size`` bytes can be a format B telegram with CRCs: one CRC after at most 126 bytes,
    or two with at least one byte in block 3 (EN 13757-4:2019 clause 12)."""
    return size <= FORMAT_B_FIRST_PART + 2 or size >= FORMAT_B_FIRST_PART + 2 + 3


def _length_mismatch(data: bytes, crcs: bool | None, frame_format: FrameFormat | None) -> str:
    l_field = data[0]
    options = []
    if crcs is not False and frame_format != "B":
        options.append(f"{format_a_size(l_field)} (format A with CRCs)")
    if crcs is not False and frame_format != "A":
        options.append(f"{l_field + 1} (format B with CRCs)")
    if crcs is not True:
        options.append(f"{l_field + 1} (CRCs removed)")
    return f"telegram has {len(data)} bytes, its L-field 0x{l_field:02X} announces " + " or ".join(options)


def enframe(frame: bytes, crcs: bool, frame_format: FrameFormat | None) -> bytes:
    """A telegram without CRCs (L-field counting its own bytes) to the bytes sent on air."""
    if not crcs:
        return frame
    if frame_format == "B":
        return add_format_b(frame)
    return add_format_a(frame)
