"""The fixed data structure, CI = 73h (EN 13757-3:2018 Annex G, formerly EN 1434-3 clause 6.4.2).

Identification, access number, status, a medium/unit word and two 32-bit counters. Status bit 7
says how the counters are coded (0: BCD, 1: binary), bit 6 whether counter 2 is a value stored at
a fixed date; the medium's four bits are spread over the top two bits of each unit byte.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from construct import BitsInteger, BitStruct, Bytes, ConstructError, Int8ul, Struct

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.codings import bcd_decode
from firmware_protocols.mbus.header import MEDIUM, Identification
from firmware_protocols.mbus.normalise import scale
from firmware_protocols.records import DataRecord

#: Annex G: medium and units, two bytes (least significant first).
MediumUnit = BitStruct(
    "medium_low" / BitsInteger(2),
    "unit1" / BitsInteger(6),
    "medium_high" / BitsInteger(2),
    "unit2" / BitsInteger(6),
)

FixedDataStructure = Struct(
    "identification" / Identification,
    "access_no" / Int8ul,
    "status" / Int8ul,
    "medium_unit" / MediumUnit,
    "counter1" / Bytes(4),
    "counter2" / Bytes(4),
)

#: Annex G (EN 1434-3:1997 6.4.2) medium, four bits: its own table, not Table 12's device types.
#: 0 to 8 name what Table 12 names; Ah to Eh are the same media in mode 2; 9h and Fh are reserved.
FIXED_MEDIUM: dict[int, str] = {
    **{code: MEDIUM[code] for code in range(9)},
    0x9: "reserved_fixed_09",
    0xA: "gas_mode_2",
    0xB: "heat_mode_2",
    0xC: "warm_water_mode_2",
    0xD: "water_mode_2",
    0xE: "heat_cost_allocator_mode_2",
    0xF: "reserved_fixed_0f",
}

#: Annex G table of physical units (6 bits): (quantity, unit, exponent to that unit, factor). The
#: J and J/h counters become Wh and W as the spec's units ask (factor 1/3600, see vif_tables.py).
FIXED_UNITS: dict[int, tuple[str, str | None, int, int | Fraction]] = {
    0x00: ("duration_hms", None, 0, 1),
    0x01: ("date_dmy", None, 0, 1),
}
_PER_3600 = Fraction(1, 3600)
for _i in range(3):
    FIXED_UNITS[0x02 + _i] = ("energy", "Wh", _i, 1)  # Wh, 10 Wh, 100 Wh
    FIXED_UNITS[0x05 + _i] = ("energy", "Wh", 3 + _i, 1)  # kWh ..
    FIXED_UNITS[0x08 + _i] = ("energy", "Wh", 6 + _i, 1)  # MWh ..
    FIXED_UNITS[0x0B + _i] = ("energy", "Wh", 3 + _i, _PER_3600)  # kJ ..
    FIXED_UNITS[0x0E + _i] = ("energy", "Wh", 6 + _i, _PER_3600)  # MJ ..
    FIXED_UNITS[0x11 + _i] = ("energy", "Wh", 9 + _i, _PER_3600)  # GJ ..
    FIXED_UNITS[0x14 + _i] = ("power", "W", _i, 1)
    FIXED_UNITS[0x17 + _i] = ("power", "W", 3 + _i, 1)
    FIXED_UNITS[0x1A + _i] = ("power", "W", 6 + _i, 1)
    FIXED_UNITS[0x1D + _i] = ("power", "W", 3 + _i, _PER_3600)  # kJ/h ..
    FIXED_UNITS[0x20 + _i] = ("power", "W", 6 + _i, _PER_3600)  # MJ/h ..
    FIXED_UNITS[0x23 + _i] = ("power", "W", 9 + _i, _PER_3600)  # GJ/h ..
    FIXED_UNITS[0x26 + _i] = ("volume", "m3", -6 + _i, 1)  # ml ..
    FIXED_UNITS[0x29 + _i] = ("volume", "m3", -3 + _i, 1)  # l ..
    FIXED_UNITS[0x2C + _i] = ("volume", "m3", _i, 1)
    FIXED_UNITS[0x2F + _i] = ("flow", "m3/h", -6 + _i, 1)  # ml/h ..
    FIXED_UNITS[0x32 + _i] = ("flow", "m3/h", -3 + _i, 1)  # l/h ..
    FIXED_UNITS[0x35 + _i] = ("flow", "m3/h", _i, 1)
FIXED_UNITS[0x38] = ("temperature", "degC", -3, 1)
FIXED_UNITS[0x39] = ("hca_units", None, 0, 1)
FIXED_UNITS[0x3F] = ("dimensionless", None, 0, 1)
UNIT_SAME_BUT_HISTORIC = 0x3E


def _counter(data: bytes, binary: bool) -> int | None:
    return int.from_bytes(data, "little") if binary else bcd_decode(data)


def decode_fixed(data: bytes) -> dict[str, Any]:
    """The user data of a CI = 73h frame to header fields and two records."""
    if len(data) != 16:
        raise DecodeError(f"fixed data structure: {len(data)} bytes, not 16 (EN 13757-3 Annex G)")
    try:
        parsed = FixedDataStructure.parse(data)
    except ConstructError as error:
        raise DecodeError(f"fixed data structure: {error}") from None
    binary = bool(parsed.status & 0x80)
    mu = parsed.medium_unit
    records = []
    unit1 = mu.unit1
    for index, (unit_code, raw) in enumerate(((mu.unit1, parsed.counter1), (mu.unit2, parsed.counter2))):
        storage = 1 if index == 1 and (parsed.status & 0x40 or unit_code == UNIT_SAME_BUT_HISTORIC) else 0
        if unit_code == UNIT_SAME_BUT_HISTORIC:
            unit_code = unit1
        quantity, unit, exponent, factor = FIXED_UNITS.get(unit_code, (f"reserved_{unit_code:02x}", None, 0, 1))
        value = _counter(raw, binary)
        records.append(
            DataRecord(
                quantity=quantity,
                unit=unit,
                value=scale(value, exponent, factor) if value is not None else None,
                storage=storage,
            )
        )
    return {
        "id": parsed.identification,
        "manufacturer": None,
        "version": None,
        "medium": FIXED_MEDIUM[(mu.medium_high << 2) | mu.medium_low],
        "access_no": parsed.access_no,
        "status": parsed.status,
        "signature": None,
        "records": [record.to_json() for record in records],
        "manufacturer_data": None,
        "more_records_follow": False,
    }
