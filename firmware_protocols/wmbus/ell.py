"""Extended link layer (ELL) of EN 13757-4:2019, CI 0x8C to 0x8F, and its AES-128-CTR encryption.

The ELL sits between the link header and the next CI field. Its long forms carry a session number
(SN) whose ENC bits say whether the rest of the telegram, from the payload CRC to the end, is
encrypted with AES-128 in counter mode. The payload CRC (CRC-16 of EN 13757-4 over the decrypted
bytes after it, least significant byte first) is what tells a right key from a wrong one.
"""

from __future__ import annotations

from typing import Any

from construct import BitsInteger, BitStruct, ByteSwapped, Const, Flag, Int8ul, Struct
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware_protocols.mbus.header import Identification, Manufacturer, Medium
from firmware_protocols.wmbus.crc import crc16_en13757

# EN 13757-4:2019 extended link layer, "Communication Control field (CC)".
CommunicationControl = BitStruct(
    "bidirectional" / Flag,  # B
    "response_delay" / Flag,  # D
    "synchronized" / Flag,  # S
    "hop_count" / Flag,  # H: set by a repeater
    "priority" / Flag,  # P
    "accessibility" / Flag,  # A
    "repeated_access" / Flag,  # R
    "reserved" / Flag,
)
#: CC bits a repeater may change, left out of the CTR initialisation vector.
CC_REPEATER_BITS = 0x12

# EN 13757-4:2019 ELL, "Session number field (SN)": 32 bits, least significant byte first.
SessionNumber = ByteSwapped(
    BitStruct(
        "encryption" / BitsInteger(3),  # ENC: 0 none, 1 AES-128-CTR
        "time" / BitsInteger(25),  # minutes since the session started
        "session" / BitsInteger(4),
    )
)
ENC_NONE = 0
ENC_AES_CTR = 1

# EN 13757-4:2019 ELL, "ELL I" (CI = 0x8C): CC and ACC only.
EllI = Struct("ci_field" / Const(0x8C, Int8ul), "cc" / CommunicationControl, "access_no" / Int8ul)

# EN 13757-4:2019 ELL, "ELL II" (CI = 0x8D): CC, ACC, SN; then the (maybe encrypted) payload CRC.
EllII = Struct(
    "ci_field" / Const(0x8D, Int8ul),
    "cc" / CommunicationControl,
    "access_no" / Int8ul,
    "sn" / SessionNumber,
)

# EN 13757-4:2019 ELL, "ELL III" (CI = 0x8E): CC, ACC and the other party's address (M2, A2).
EllIII = Struct(
    "ci_field" / Const(0x8E, Int8ul),
    "cc" / CommunicationControl,
    "access_no" / Int8ul,
    "manufacturer" / Manufacturer,
    "id" / Identification,
    "version" / Int8ul,
    "medium" / Medium,
)

# EN 13757-4:2019 ELL, "ELL IV" (CI = 0x8F): CC, ACC, M2, A2, SN; then the payload CRC.
EllIV = Struct(
    "ci_field" / Const(0x8F, Int8ul),
    "cc" / CommunicationControl,
    "access_no" / Int8ul,
    "manufacturer" / Manufacturer,
    "id" / Identification,
    "version" / Int8ul,
    "medium" / Medium,
    "sn" / SessionNumber,
)

#: CI field to (its table, header size without the payload CRC).
ELL_BY_CI: dict[int, tuple[Struct, int]] = {0x8C: (EllI, 3), 0x8D: (EllII, 7), 0x8E: (EllIII, 11), 0x8F: (EllIV, 15)}


def payload_crc(data: bytes) -> bytes:
    """The ELL payload CRC of the (plain) bytes after it, as sent: least significant byte first."""
    return crc16_en13757(data).to_bytes(2, "little")


def ctr_iv(manufacturer_and_address: bytes, cc: int, sn: bytes) -> bytes:
    """The CTR initial counter block: M, A (link layer), CC without H and R, SN, FN = 0, BC = 0."""
    return manufacturer_and_address + bytes([cc & ~CC_REPEATER_BITS & 0xFF]) + sn + b"\x00\x00\x00"


def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR (the same operation encrypts and decrypts)."""
    cipher = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return cipher.update(data) + cipher.finalize()


def ell_json(parsed: Any) -> dict[str, Any]:
    """The parsed ELL container as JSON-ready fields."""
    result: dict[str, Any] = {
        "ci_field": parsed.ci_field,
        "communication_control": {k: v for k, v in parsed.cc.items() if not k.startswith("_") and k != "reserved"},
        "access_no": parsed.access_no,
    }
    if "manufacturer" in parsed:
        result["address"] = {
            "manufacturer": parsed.manufacturer,
            "id": parsed.id,
            "version": parsed.version,
            "medium": parsed.medium,
        }
    if "sn" in parsed:
        result["session_number"] = {
            "encryption": parsed.sn.encryption,
            "time": parsed.sn.time,
            "session": parsed.sn.session,
        }
    return result
