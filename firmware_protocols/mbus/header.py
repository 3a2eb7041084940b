"""EN 13757-3 application headers: identification, manufacturer, device type (medium), headers.

Also used by wireless M-Bus (EN 13757-4), whose link layer carries the same identification,
manufacturer and device type fields, and whose application layer uses the same long and short
headers.
"""

from __future__ import annotations

from typing import Any

from construct import Adapter, Bytes, Int8ul, Int16ul, Struct

from firmware_protocols.errors import DecodeError

# --- Manufacturer ID (EN 13757-3:2018 clause 5.6; EN 62056-21 FLAG codes) ------------------------
# Three upper-case letters, each as (ASCII - 64) in five bits, packed C1*32*32 + C2*32 + C3 into a
# 16-bit little-endian field.


def manufacturer_to_code(letters: str) -> int:
    """Three letters A-Z to the 16-bit manufacturer ID."""
    if len(letters) != 3 or not all("A" <= c <= "Z" for c in letters):
        raise DecodeError(f"manufacturer {letters!r}: expected three letters A-Z")
    return ((ord(letters[0]) - 64) << 10) | ((ord(letters[1]) - 64) << 5) | (ord(letters[2]) - 64)


def code_to_manufacturer(code: int) -> str:
    """The 16-bit manufacturer ID to three letters (values outside A-Z show as the raw 5-bit char)."""
    return chr(((code >> 10) & 0x1F) + 64) + chr(((code >> 5) & 0x1F) + 64) + chr((code & 0x1F) + 64)


_MANUFACTURER_CACHE: dict[int, str] = {}


def manufacturer_from_bytes(data: bytes) -> str:
    """Two bytes, little-endian, to three letters (cached: a bus has few manufacturers)."""
    code = data[0] | (data[1] << 8)
    letters = _MANUFACTURER_CACHE.get(code)
    if letters is None:
        letters = _MANUFACTURER_CACHE.setdefault(code, code_to_manufacturer(code))
    return letters


def manufacturer_to_bytes(letters: str) -> bytes:
    return manufacturer_to_code(letters).to_bytes(2, "little")


class _ManufacturerAdapter(Adapter):
    def _decode(self, obj: int, context: Any, path: str) -> str:
        return code_to_manufacturer(obj)

    def _encode(self, obj: str, context: Any, path: str) -> int:
        return manufacturer_to_code(obj)


Manufacturer = _ManufacturerAdapter(Int16ul)

# --- Identification number (EN 13757-3:2018 clause 5.5): 8 BCD digits, least significant byte first


def identification_from_bytes(data: bytes) -> str:
    """Four bytes to the 8-digit identification. Digits A-F (wildcards, broken meters) stay as hex."""
    if len(data) != 4:
        raise DecodeError(f"identification: expected 4 bytes, got {len(data)}")
    return data[::-1].hex().upper()


def identification_to_bytes(identification: str) -> bytes:
    """An 8-digit identification (``F`` allowed as the wildcard nibble) to its four bytes."""
    if len(identification) != 8 or any(c not in "0123456789Ff" for c in identification):
        raise DecodeError(f"identification {identification!r}: expected 8 decimal digits")
    return bytes.fromhex(identification)[::-1]


class _IdentificationAdapter(Adapter):
    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return identification_from_bytes(obj)

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        return identification_to_bytes(obj)


Identification = _IdentificationAdapter(Bytes(4))

# --- Device type / medium (EN 13757-3:2018 clause 5.7, Table 12) --------------------------------------

MEDIUM: dict[int, str] = {
    0x00: "other",
    0x01: "oil",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat",  # heat meter, outlet
    0x05: "steam",
    0x06: "warm_water",  # 30 °C to 90 °C
    0x07: "water",
    0x08: "heat_cost_allocator",
    0x09: "compressed_air",
    0x0A: "cooling",  # cooling load meter, outlet
    0x0B: "cooling_inlet",
    0x0C: "heat_inlet",
    0x0D: "heat_and_cooling",
    0x0E: "bus_system",
    0x0F: "unknown",
    0x10: "irrigation_water",
    0x11: "water_data_logger",
    0x12: "gas_data_logger",
    0x13: "gas_converter",
    0x14: "calorific_value",
    0x15: "hot_water",  # >= 90 °C
    0x16: "cold_water",
    0x17: "dual_register_water",
    0x18: "pressure",
    0x19: "ad_converter",
    0x1A: "smoke_detector",
    0x1B: "room_sensor",
    0x1C: "gas_detector",
    0x20: "breaker_electricity",
    0x21: "valve",  # gas or water
    0x25: "customer_unit",
    0x28: "waste_water",
    0x29: "garbage",
    0x2A: "carbon_dioxide",
    0x31: "communication_controller",
    0x32: "unidirectional_repeater",
    0x33: "bidirectional_repeater",
    0x36: "radio_converter_system_side",
    0x37: "radio_converter_meter_side",
    0x38: "wired_adapter",
}
for _code in range(256):
    MEDIUM.setdefault(_code, f"reserved_{_code:02x}")
MEDIUM_CODE: dict[str, int] = {name: code for code, name in MEDIUM.items()}
#: The device types of water meters in Table 12 (EN 13757-7:2018 and OMS Vol. 2 use the same codes in
#: a wireless telegram's A-field): warm water 06h, water 07h, hot water 15h, cold water 16h.
WATER_METER_TYPES = frozenset({0x06, 0x07, 0x15, 0x16})


def medium_name(code: int) -> str:
    return MEDIUM[code]


def medium_code(name: str) -> int:
    try:
        return MEDIUM_CODE[name]
    except KeyError:
        raise DecodeError(f"medium {name!r}: not a device type of EN 13757-3 Table 12") from None


class _MediumAdapter(Adapter):
    def _decode(self, obj: int, context: Any, path: str) -> str:
        return MEDIUM[obj]

    def _encode(self, obj: str, context: Any, path: str) -> int:
        return medium_code(obj)


Medium = _MediumAdapter(Int8ul)

# --- Application headers (EN 13757-3:2018 clause 7.5, Table 7 "long" and "short" header) -----------

#: CI = 72h (and wM-Bus 8Ch ... 7Ah variants): the long header, which names the meter itself.
LongHeader = Struct(
    "identification" / Identification,
    "manufacturer" / Manufacturer,
    "version" / Int8ul,
    "medium" / Medium,
    "access_no" / Int8ul,
    "status" / Int8ul,
    "signature" / Int16ul,  # configuration word (security mode) in EN 13757-7
)

#: CI = 7Ah: the short header; the meter is named by the link layer.
ShortHeader = Struct(
    "access_no" / Int8ul,
    "status" / Int8ul,
    "signature" / Int16ul,
)

LONG_HEADER_SIZE = 12
SHORT_HEADER_SIZE = 4
