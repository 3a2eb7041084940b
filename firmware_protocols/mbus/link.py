"""EN 13757-2 link layer: the four frame formats, the C-field and the A-field (clause 5).

One Construct per frame format of EN 13757-2 clause 5.2 (Figure "Telegram formats"); each parses
and builds, with the length, checksum and stop-byte checks inside the definition.
"""

from __future__ import annotations

from typing import Any

from construct import (
    BitStruct,
    Bytes,
    Check,
    Checksum,
    Const,
    ConstructError,
    Flag,
    Int8ul,
    Nibble,
    Rebuild,
    Struct,
    Terminated,
    this,
)

from firmware_protocols.errors import DecodeError

SINGLE_CHARACTER = 0xE5  # clause 5.2: the acknowledgement (ACK)
START_SHORT = 0x10
START_LONG = 0x68
STOP = 0x16

# --- A-field (clause 5.4): primary addresses -------------------------------------------------------
ADDRESS_UNCONFIGURED = 0x00
ADDRESS_NETWORK_LAYER = 0xFD  # secondary addressing: the slave selected by SND_UD
ADDRESS_BROADCAST_NO_REPLY = 0xFF
ADDRESS_BROADCAST_REPLY = 0xFE

# --- C-field (clause 5.3, Table "Control field"): function codes ---------------------------------------
# bit 7 reserved (0), bit 6 PRM (1 = from the master), bit 5 FCB (master) / ACD (slave),
# bit 4 FCV (master) / DFC (slave), bits 3..0 the function.
CField = BitStruct(
    "reserved" / Const(0, Flag),
    "prm" / Flag,
    "fcb_acd" / Flag,
    "fcv_dfc" / Flag,
    "function" / Nibble,
)

SND_NKE = 0x40  # initialise the slave (reset FCB)
SND_UD = 0x53  # send user data to the slave (| 0x20 with FCB)
REQ_UD2 = 0x5B  # request class-2 data (| 0x20 with FCB)
REQ_UD1 = 0x5A  # request class-1 data (| 0x20 with FCB)
RSP_UD = 0x08  # the slave's answer (| 0x10 DFC, | 0x20 ACD)
FCB = 0x20

_MASTER_FUNCTIONS = {0x0: "SND_NKE", 0x3: "SND_UD", 0xA: "REQ_UD1", 0xB: "REQ_UD2"}
_SLAVE_FUNCTIONS = {0x8: "RSP_UD"}


def c_field_name(c_field: int) -> str:
    """The function the C-field names, e.g. ``SND_NKE``, ``REQ_UD2``, ``RSP_UD``."""
    table = _MASTER_FUNCTIONS if c_field & 0x40 else _SLAVE_FUNCTIONS
    return table.get(c_field & 0x0F, f"unknown_{c_field:02x}")


def _checksum(data: bytes) -> int:
    """Clause 5.2: the arithmetic sum, without carry, of the C-, A- and user data bytes."""
    return sum(data) & 0xFF


# --- Frame formats (clause 5.2) --------------------------------------------------------------------

#: Single character: E5h, the positive acknowledgement.
SingleCharacter = Struct("start" / Const(SINGLE_CHARACTER, Int8ul), Terminated)

#: Short frame: 10h C A Check-sum 16h.
ShortFrame = Struct(
    "start" / Const(START_SHORT, Int8ul),
    "c_field" / Int8ul,
    "a_field" / Int8ul,
    "checksum" / Checksum(Int8ul, _checksum, lambda ctx: bytes((ctx.c_field, ctx.a_field))),
    "stop" / Const(STOP, Int8ul),
    Terminated,
)

#: Control frame (L = 3) and long frame (L > 3): 68h L L 68h C A CI [user data] Check-sum 16h.
#: L counts C, A, CI and the user data; a control frame is a long frame without user data.
LongFrame = Struct(
    "start" / Const(START_LONG, Int8ul),
    "length" / Rebuild(Int8ul, lambda ctx: 3 + len(ctx.user_data)),
    "length_repeat" / Rebuild(Int8ul, this.length),
    "start_repeat" / Const(START_LONG, Int8ul),
    Check(this.length == this.length_repeat),
    Check(this.length >= 3),
    "c_field" / Int8ul,
    "a_field" / Int8ul,
    "ci_field" / Int8ul,
    "user_data" / Bytes(this.length - 3),
    "checksum"
    / Checksum(
        Int8ul,
        _checksum,
        lambda ctx: bytes((ctx.c_field, ctx.a_field, ctx.ci_field)) + ctx.user_data,
    ),
    "stop" / Const(STOP, Int8ul),
    Terminated,
)


def frame_type(data: bytes) -> str:
    """``single``, ``short``, ``control`` or ``long`` from the start byte (and L)."""
    if not data:
        raise DecodeError("empty frame")
    start = data[0]
    if start == SINGLE_CHARACTER:
        return "single"
    if start == START_SHORT:
        return "short"
    if start == START_LONG:
        if len(data) < 2:
            raise DecodeError("long frame: truncated before L")
        return "control" if data[1] == 3 else "long"
    raise DecodeError(f"start byte {start:02X}h: not E5h, 10h or 68h (EN 13757-2 clause 5.2)")


def _explain_long(data: bytes) -> str:
    """A precise reason for a long frame Construct rejected, for the error message."""
    if len(data) < 9:
        return f"long frame of {len(data)} bytes: shorter than the 9 a control frame needs"
    if data[1] != data[2]:
        return f"L fields differ ({data[1]} and {data[2]})"
    if data[3] != START_LONG:
        return f"second start byte {data[3]:02X}h, not 68h"
    if data[1] < 3:
        return f"L = {data[1]}: less than the 3 bytes of C, A and CI"
    expected = data[1] + 6
    if len(data) != expected:
        return f"L = {data[1]} needs {expected} bytes, got {len(data)}"
    if _checksum(data[4:-2]) != data[-2]:
        return f"checksum {data[-2]:02X}h, computed {_checksum(data[4:-2]):02X}h"
    if data[-1] != STOP:
        return f"stop byte {data[-1]:02X}h, not 16h"
    return "malformed"


def _explain_short(data: bytes) -> str:
    if len(data) != 5:
        return f"short frame of {len(data)} bytes, not 5"
    if _checksum(data[1:3]) != data[3]:
        return f"checksum {data[3]:02X}h, computed {_checksum(data[1:3]):02X}h"
    return f"stop byte {data[4]:02X}h, not 16h"


def _flags(c_field: int) -> dict[str, bool]:
    """FCB and FCV of a master's C-field (a slave answers a repeated FCB with its last reply)."""
    fields = CField.parse(bytes((c_field & 0x7F,)))
    if fields.prm:
        return {"fcb": fields.fcb_acd, "fcv": fields.fcv_dfc}
    return {}


def parse_link(data: bytes) -> dict[str, Any]:
    """Parse any EN 13757-2 frame into its link-layer fields (``user_data`` for long frames)."""
    kind = frame_type(data)
    try:
        if kind == "single":
            SingleCharacter.parse(data)
            return {"frame_type": "single"}
        if kind == "short":
            parsed = ShortFrame.parse(data)
            return {
                "frame_type": "short",
                "c_field": parsed.c_field,
                "function": c_field_name(parsed.c_field),
                "a_field": parsed.a_field,
                **_flags(parsed.c_field),
            }
        parsed = LongFrame.parse(data)
    except ConstructError:
        reason = _explain_short(data) if kind == "short" else _explain_long(data)
        if kind == "single":
            reason = f"single character frame of {len(data)} bytes"
        raise DecodeError(f"EN 13757-2 {kind} frame: {reason}") from None
    return {
        "frame_type": "control" if parsed.length == 3 else "long",
        "c_field": parsed.c_field,
        "function": c_field_name(parsed.c_field),
        "a_field": parsed.a_field,
        **_flags(parsed.c_field),
        "ci_field": parsed.ci_field,
        "user_data": parsed.user_data,
    }


# --- Builders ---------------------------------------------------------------------------------------


def build_single_character() -> bytes:
    """E5h: the slave's acknowledgement of SND_NKE and SND_UD."""
    return bytes(SingleCharacter.build({}))


def build_short(c_field: int, address: int) -> bytes:
    return bytes(ShortFrame.build({"c_field": c_field, "a_field": address}))


def build_long(c_field: int, address: int, ci_field: int, user_data: bytes = b"") -> bytes:
    if len(user_data) > 252:
        raise DecodeError(f"user data of {len(user_data)} bytes: a long frame carries at most 252")
    return bytes(
        LongFrame.build({"c_field": c_field, "a_field": address, "ci_field": ci_field, "user_data": user_data})
    )


def _check_address(address: int) -> None:
    if not 0 <= address <= 0xFF:
        raise DecodeError(f"primary address {address}: not 0..255")


def build_snd_nke(address: int) -> bytes:
    """SND_NKE (10 40 A CS 16): initialise the slave at ``address``."""
    _check_address(address)
    return build_short(SND_NKE, address)


def build_req_ud2(address: int, fcb: bool = False) -> bytes:
    """REQ_UD2 (10 5B/7B A CS 16): ask for class-2 data; FCB alternates between successful requests."""
    _check_address(address)
    return build_short(REQ_UD2 | (FCB if fcb else 0), address)
