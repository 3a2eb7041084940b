"""Authentication and fragmentation sublayer of EN 13757-7:2018 clause 6 (CI = 0x90).

OMS security mode 7 puts an AFL before the TPL: its message counter (MCR) feeds the key derivation
and its MAC, an AES-CMAC truncated to the length the authentication type names, authenticates
``MCL || MCR || [ML] || the TPL from its CI field to the last byte``. Fragmented messages (more
fragments, or a fragment id other than 0) are not supported: no OMS water meter sends them.
"""

from __future__ import annotations

from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    ByteSwapped,
    Const,
    Flag,
    If,
    Int8ul,
    Int16ul,
    Int32ul,
    Prefixed,
    Struct,
    this,
)

# EN 13757-7:2018 6.3.2 "AFL Fragmentation Control Field (AFL.FCL)", 16 bits least significant byte first.
FragmentationControl = ByteSwapped(
    BitStruct(
        "reserved" / Flag,  # bit 15
        "more_fragments" / Flag,  # bit 14 MF
        "message_control_present" / Flag,  # bit 13 MCLP
        "message_length_present" / Flag,  # bit 12 MLP
        "message_counter_present" / Flag,  # bit 11 MCRP
        "mac_present" / Flag,  # bit 10 MACP
        "key_information_present" / Flag,  # bit 9 KIP
        "reserved_8" / Flag,  # bit 8
        "fragment_id" / BitsInteger(8),  # bits 7..0 FID
    )
)

# EN 13757-7:2018 6.3.3 "AFL Message Control Field (AFL.MCL)".
MessageControl = BitStruct(
    "reserved" / Flag,  # bit 7
    "message_length_in_message" / Flag,  # bit 6 MLMP
    "message_counter_in_message" / Flag,  # bit 5 MCMP
    "key_information_in_message" / Flag,  # bit 4 KIMP
    "authentication_type" / BitsInteger(4),  # bits 3..0 AT
)

#: EN 13757-7:2018 6.3.3, table "Authentication-Type": AT to the MAC's length in bytes (AES-CMAC-128
#: truncated). AT 8 (AES-GMAC) is listed so its frame parses; decoding refuses it (not verified).
MAC_LENGTH: dict[int, int] = {0: 0, 3: 2, 4: 4, 5: 8, 6: 12, 7: 16, 8: 12}
AT_AES_CMAC = frozenset({3, 4, 5, 6, 7})
AT_AES_GMAC = 8


def _mac_length(context: Any) -> int:
    control = context.mcl
    return MAC_LENGTH.get(control.authentication_type, 0) if control is not None else 0


# EN 13757-7:2018 6.2 "Overview of the AFL-Structure": CI, AFLL, FCL, [MCL], [KI], [MCR], [MAC], [ML].
AuthenticationFragmentationLayer = Struct(
    "ci_field" / Const(0x90, Int8ul),
    "body"
    / Prefixed(
        Int8ul,  # 6.3.1 AFL.AFLL: bytes after itself
        Struct(
            "fcl" / FragmentationControl,
            "mcl" / If(this.fcl.message_control_present, MessageControl),
            "key_information" / If(this.fcl.key_information_present, Int16ul),  # 6.3.4 AFL.KI
            "message_counter" / If(this.fcl.message_counter_present, Int32ul),  # 6.3.5 AFL.MCR
            "mac" / If(this.fcl.mac_present, Bytes(_mac_length)),  # 6.3.6 AFL.MAC
            "message_length" / If(this.fcl.message_length_present, Int16ul),  # 6.3.7 AFL.ML
        ),
    ),
)


def mac_input(body: Any, tpl: bytes) -> bytes:
    """What the AFL MAC covers: MCL, MCR, ML if present, then the TPL as sent (encrypted)."""
    parts = [MessageControl.build(body.mcl)] if body.mcl is not None else []
    if body.message_counter is not None:
        parts.append(body.message_counter.to_bytes(4, "little"))
    if body.message_length is not None:
        parts.append(body.message_length.to_bytes(2, "little"))
    return b"".join(parts) + tpl


def afl_json(body: Any) -> dict[str, Any]:
    return {
        "ci_field": 0x90,
        "fragment_id": body.fcl.fragment_id,
        "more_fragments": body.fcl.more_fragments,
        "authentication_type": body.mcl.authentication_type if body.mcl is not None else None,
        "key_information": body.key_information,
        "message_counter": body.message_counter,
        "mac": body.mac.hex().upper() if body.mac is not None else None,
        "message_length": body.message_length,
    }
