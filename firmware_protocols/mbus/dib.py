"""The data information block: DIF and up to ten DIFEs (EN 13757-3:2018 clause 6.3, Tables 4 and 8).

The DIF says how the data field is coded, which function the value has, and the lowest bit of the
storage number; each DIFE adds four storage bits, two tariff bits and one subunit bit, in order.
"""

from __future__ import annotations

from construct import BitsInteger, BitStruct, Check, Flag, If, Nibble, RepeatUntil, Struct, this

MAX_DIFES = 10  # clause 6.3.4: at most ten DIFEs

#: Table 4, the DIF. Data field 0Fh with function/storage bits forms the special functions (Table 9).
DIF = BitStruct(
    "extension" / Flag,
    "storage_lsb" / BitsInteger(1),
    "function" / BitsInteger(2),  # 00 instantaneous, 01 maximum, 10 minimum, 11 during error state
    "data_field" / Nibble,
)

#: Table 8, the DIFE.
DIFE = BitStruct(
    "extension" / Flag,
    "subunit" / BitsInteger(1),
    "tariff" / BitsInteger(2),
    "storage" / Nibble,
)

DataInformationBlock = Struct(
    "dif" / DIF,
    "difes" / If(this.dif.extension, RepeatUntil(lambda item, items, ctx: not item["extension"], DIFE)),
    Check(lambda ctx: ctx.difes is None or len(ctx.difes) <= MAX_DIFES),
)

FUNCTIONS = ("instantaneous", "maximum", "minimum", "error")

# Special functions (Table 9): DIF values whose data field is Fh.
DIF_MANUFACTURER_DATA = 0x0F  # manufacturer-specific data follow to the end
DIF_MORE_RECORDS_FOLLOW = 0x1F  # the same, and more records follow in the next telegram
DIF_IDLE_FILLER = 0x2F  # skipped; not a record
DIF_GLOBAL_READOUT = 0x7F  # global readout request (master to slave)


def storage_tariff_subunit(storage_lsb: int, difes: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """Storage number, tariff and subunit from the DIF's storage bit and each DIFE's (storage,
    tariff, subunit) bits, the first DIFE holding the lowest bits."""
    storage, tariff, subunit = storage_lsb, 0, 0
    for index, (s, t, u) in enumerate(difes):
        storage |= s << (1 + 4 * index)
        tariff |= t << (2 * index)
        subunit |= u << index
    return storage, tariff, subunit


def split_storage_tariff_subunit(storage: int, tariff: int, subunit: int) -> tuple[int, list[tuple[int, int, int]]]:
    """The inverse: the DIF's storage bit and the fewest DIFEs that carry the three numbers."""
    if storage < 0 or tariff < 0 or subunit < 0:
        raise ValueError("storage, tariff and subunit are not negative")
    storage_lsb, rest = storage & 1, storage >> 1
    difes: list[tuple[int, int, int]] = []
    while rest or tariff or subunit:
        difes.append((rest & 0x0F, tariff & 0x03, subunit & 0x01))
        rest, tariff, subunit = rest >> 4, tariff >> 2, subunit >> 1
    if len(difes) > MAX_DIFES:
        raise ValueError("storage, tariff or subunit too large for ten DIFEs")
    return storage_lsb, difes
