"""What a master sends in SND_UD (EN 13757-3:2018 clause 5 Table 2; EN 13757-2 clause 5.5.3; secondary
addressing per EN 13757-3 Annex E): what a slave (a simulator) must understand.
"""

from __future__ import annotations

from typing import Any

from construct import Adapter, Bytes, ConstructError, Int8ul, Int16ul, Struct

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.header import MEDIUM, code_to_manufacturer, manufacturer_to_code, medium_code

CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECTION = 0x52
CI_BAUD_RATES = {0xB8: 300, 0xB9: 600, 0xBA: 1200, 0xBB: 2400, 0xBC: 4800, 0xBD: 9600, 0xBE: 19200, 0xBF: 38400}

WILDCARD_BYTE = 0xFF


class _WildIdentification(Adapter):
    """8 BCD digits, any of which may be the wildcard Fh."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return obj[::-1].hex().upper()

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        if len(obj) != 8 or any(c not in "0123456789Ff" for c in obj):
            raise DecodeError(f"secondary identification {obj!r}: 8 digits, F as wildcard")
        return bytes.fromhex(obj)[::-1]


class _WildManufacturer(Adapter):
    def _decode(self, obj: int, context: Any, path: str) -> str | None:
        return None if obj == 0xFFFF else code_to_manufacturer(obj)

    def _encode(self, obj: str | None, context: Any, path: str) -> int:
        return 0xFFFF if obj is None else manufacturer_to_code(obj)


class _WildByte(Adapter):
    def _decode(self, obj: int, context: Any, path: str) -> int | None:
        return None if obj == WILDCARD_BYTE else obj

    def _encode(self, obj: int | None, context: Any, path: str) -> int:
        return WILDCARD_BYTE if obj is None else obj


class _WildMedium(Adapter):
    def _decode(self, obj: int, context: Any, path: str) -> str | None:
        return None if obj == WILDCARD_BYTE else MEDIUM[obj]

    def _encode(self, obj: str | None, context: Any, path: str) -> int:
        return WILDCARD_BYTE if obj is None else medium_code(obj)


#: Secondary address in a selection (CI = 52h): identification, manufacturer, version, medium;
#: Fh nibbles in the identification and FFh bytes elsewhere are wildcards (None once decoded).
SecondaryAddress = Struct(
    "identification" / _WildIdentification(Bytes(4)),
    "manufacturer" / _WildManufacturer(Int16ul),
    "version" / _WildByte(Int8ul),
    "medium" / _WildMedium(Int8ul),
)


def matches(selection: dict[str, Any], identification: str, manufacturer: str, version: int, medium: str) -> bool:
    """Whether a slave with this secondary address answers to ``selection`` (decoded as above)."""
    pattern = selection["identification"]
    if any(p != "F" and p != c for p, c in zip(pattern, identification, strict=True)):
        return False
    return (
        (selection["manufacturer"] is None or selection["manufacturer"] == manufacturer)
        and (selection["version"] is None or selection["version"] == version)
        and (selection["medium"] is None or selection["medium"] == medium)
    )


def decode_master_user_data(ci: int, user_data: bytes) -> dict[str, Any]:
    """The application layer of a master's SND_UD (or a control frame's CI)."""
    if ci == CI_SELECTION:
        if len(user_data) != 8:
            raise DecodeError(f"selection: {len(user_data)} bytes of secondary address, not 8")
        try:
            address = SecondaryAddress.parse(user_data)
        except ConstructError as error:
            raise DecodeError(f"selection: {error}") from None
        return {"command": "select", "secondary_address": {k: v for k, v in address.items() if k != "_io"}}
    if ci == CI_DATA_SEND:
        from firmware_protocols.mbus.records import decode_records_reference

        records, manufacturer_data, more = decode_records_reference(user_data)
        return {
            "command": "data_send",
            "records": [record.to_json() for record in records],
            "manufacturer_data": manufacturer_data,
            "more_records_follow": more,
        }
    if ci == CI_APPLICATION_RESET:
        return {"command": "application_reset", "subcode": user_data[0] if user_data else None}
    if ci in CI_BAUD_RATES:
        return {"command": "set_baud_rate", "baud_rate": CI_BAUD_RATES[ci]}
    raise DecodeError(f"CI field {ci:02X}h: not a master-to-slave command this decoder knows")
