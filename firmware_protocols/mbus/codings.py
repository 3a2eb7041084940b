"""Data field codings (EN 13757-3:2018 clause 6.3.1, Table 5 "Coding of the data field"; Annex A).

Type A is BCD (least significant byte first; a leading Fh nibble is the minus sign), Type B is a
signed binary integer, Type H is an IEEE 754 single, and LVAR (clause 6.3.3, Table 6) chooses text,
BCD or binary by its own value.
"""

from __future__ import annotations

import math
from typing import Any

from construct import (
    Adapter,
    Bytes,
    BytesInteger,
    Construct,
    Float32l,
    Int8sl,
    Int16sl,
    Int24sl,
    Int32sl,
    Int64sl,
    Pass,
    SizeofError,
    stream_read,
    stream_write,
)

from firmware_protocols.errors import DecodeError

# --- Type A: BCD ----------------------------------------------------------------------------------


def bcd_decode(data: bytes) -> int | None:
    """BCD, least significant byte first; Fh as the most significant nibble means negative.

    A field with other non-decimal digits (meters send FF.. for "no value") decodes as ``None``.
    """
    digits = data[::-1].hex()
    if digits.isdigit():
        return int(digits)
    if digits[0] == "f" and digits[1:].isdigit():
        return -int(digits[1:]) if len(digits) > 1 else None
    return None


def bcd_encode(value: int, size: int) -> bytes:
    """An integer to ``size`` bytes of BCD; negatives use the Fh sign nibble (one digit fewer)."""
    digits = size * 2
    if value < 0:
        magnitude = str(-value)
        if len(magnitude) > digits - 1:
            raise DecodeError(f"{value} does not fit {digits}-digit BCD")
        text = "f" + magnitude.rjust(digits - 1, "0")
    else:
        text = str(value)
        if len(text) > digits:
            raise DecodeError(f"{value} does not fit {digits}-digit BCD")
        text = text.rjust(digits, "0")
    return bytes.fromhex(text)[::-1]


class BCD(Adapter):
    """Type A: ``size`` bytes of BCD."""

    def __init__(self, size: int) -> None:
        super().__init__(Bytes(size))
        self.size = size

    def _decode(self, obj: bytes, context: Any, path: str) -> int | None:
        return bcd_decode(obj)

    def _encode(self, obj: int, context: Any, path: str) -> bytes:
        return bcd_encode(obj, self.size)


# --- Type H: real ---------------------------------------------------------------------------------


class Real32(Adapter):
    """Type H: IEEE 754 single; NaN and infinities (not JSON numbers) decode as ``None``."""

    def __init__(self) -> None:
        super().__init__(Float32l)

    def _decode(self, obj: float, context: Any, path: str) -> float | None:
        return obj if math.isfinite(obj) else None

    def _encode(self, obj: float, context: Any, path: str) -> float:
        return obj


# --- LVAR (clause 6.3.3, Table 6) -----------------------------------------------------------------


def lvar_kind(lvar: int) -> tuple[str, int]:
    """The meaning of an LVAR byte: (kind, number of data bytes that follow)."""
    if lvar <= 0xBF:
        return "text", lvar
    if 0xC0 <= lvar <= 0xC9:
        return "bcd", lvar - 0xC0
    if 0xD0 <= lvar <= 0xD9:
        return "negative_bcd", lvar - 0xD0
    if 0xE0 <= lvar <= 0xEF:
        return "binary", lvar - 0xE0
    if 0xF0 <= lvar <= 0xF4:
        return "binary", 4 * (lvar - 0xEC)
    if lvar == 0xF5:
        return "binary", 48
    if lvar == 0xF6:
        return "binary", 64
    raise DecodeError(f"LVAR {lvar:02X}h: reserved (EN 13757-3 Table 6)")


def lvar_decode(kind: str, data: bytes) -> int | str | None:
    """Text is sent last character first; a binary number is shown as hex, most significant first
    (a numeric record's is then read as a number: ``lvar_binary_number``).

    A BCD number's sign is the LVAR's (Table 6): its digits are all decimal, an Fh nibble being no
    minus sign here, so a number with any other digit has no value.
    """
    if kind == "text":
        return data[::-1].decode("latin-1")
    if kind in ("bcd", "negative_bcd"):
        digits = data[::-1].hex()
        if not digits.isdigit():  # also the empty number (C0h, D0h)
            return None
        return -int(digits) if kind == "negative_bcd" else int(digits)
    return data[::-1].hex()


#: LVAR E0h..EFh (Table 6): a binary number of 0 to 15 bytes. F0h..F6h carry 16 to 64 bytes, keys and
#: signatures rather than a register (libmbus's example_binary16_lvar: a 16-byte password): hex.
LVAR_NUMBER_MAX_BYTES = 15


def lvar_binary_number(data: bytes) -> int | None:
    """An LVAR binary number of E0h..EFh in a numeric record: read as Type B, a signed little-endian
    integer, as every binary number data field of Table 5 is; ``None`` when the field is empty (E0h).
    Read unsigned, a negative value would become a large positive one, and a register a false
    reading. Identifiers, manufacturer data and longer binary fields keep ``lvar_decode``'s hex text.
    """
    return int.from_bytes(data, "little", signed=True) if data else None


class VariableLength(Construct):
    """LVAR then its data; parses to ``(kind, value)``, builds from it."""

    def _parse(self, stream: Any, context: Any, path: str) -> tuple[str, int | str | None]:
        lvar = stream_read(stream, 1, path)[0]
        kind, size = lvar_kind(lvar)
        return kind, lvar_decode(kind, stream_read(stream, size, path))

    def _build(self, obj: tuple[str, Any], stream: Any, context: Any, path: str) -> tuple[str, Any]:
        kind, value = obj
        if kind == "text":
            data = str(value).encode("latin-1")[::-1]
            if len(data) > 0xBF:
                raise DecodeError("LVAR text longer than 191 characters")
            lvar = len(data)
        elif kind in ("bcd", "negative_bcd"):
            magnitude = abs(int(value))
            size = max(1, (len(str(magnitude)) + 1) // 2)
            if size > 9:
                raise DecodeError(f"{value} too long for LVAR BCD")
            data = bcd_encode(magnitude, size)
            lvar = (0xC0 if kind == "bcd" else 0xD0) + size
        elif kind == "binary":
            data = bytes.fromhex(str(value))[::-1]
            lvar = _binary_lvar(len(data))
        else:
            raise DecodeError(f"LVAR kind {kind!r}")
        stream_write(stream, bytes((lvar,)) + data, 1 + len(data), path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError("LVAR data has no fixed size")


def _binary_lvar(size: int) -> int:
    if size <= 15:
        return 0xE0 + size
    if size % 4 == 0 and 16 <= size <= 32:
        return 0xEC + size // 4
    if size == 48:
        return 0xF5
    if size == 64:
        return 0xF6
    raise DecodeError(f"no LVAR for a binary number of {size} bytes")


# --- The data field (DIF bits 3..0) ------------------------------------------------------------------

#: DIF data field -> (name, Construct). 8 is "selection for readout" (no data), Fh special functions.
DATA_FIELD: dict[int, tuple[str, Construct]] = {
    0x0: ("none", Pass),
    0x1: ("int8", Int8sl),
    0x2: ("int16", Int16sl),
    0x3: ("int24", Int24sl),
    0x4: ("int32", Int32sl),
    0x5: ("real32", Real32()),
    0x6: ("int48", BytesInteger(6, signed=True, swapped=True)),
    0x7: ("int64", Int64sl),
    0x8: ("selection", Pass),
    0x9: ("bcd2", BCD(1)),
    0xA: ("bcd4", BCD(2)),
    0xB: ("bcd6", BCD(3)),
    0xC: ("bcd8", BCD(4)),
    0xD: ("lvar", VariableLength()),
    0xE: ("bcd12", BCD(6)),
}
CODING_FIELD: dict[str, int] = {name: field for field, (name, _) in DATA_FIELD.items()}
#: Bytes of the data field for each fixed-size coding.
DATA_SIZE: dict[int, int] = {
    0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8,
    0x8: 0, 0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6,
}  # fmt: skip
