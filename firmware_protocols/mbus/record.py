"""One data record (EN 13757-3:2018 clause 6.2, Figure 6): DIB, VIB and the data field.

This is the reference path: Construct definitions that parse and build every record. The fast path
(``fastpath.py``) must agree with it on every frame.
"""

from __future__ import annotations

import io
from typing import Any

from construct import ConstructError, Struct, Switch, Tell, this

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.codings import DATA_FIELD
from firmware_protocols.mbus.dib import (
    DIF_GLOBAL_READOUT,
    DIF_IDLE_FILLER,
    DIF_MANUFACTURER_DATA,
    DIF_MORE_RECORDS_FOLLOW,
    MAX_DIFES,
    DataInformationBlock,
)
from firmware_protocols.mbus.vib import MAX_VIFES, ValueInformationBlock

#: Figure 6: a data record is a DIB, a VIB and the data field the DIF describes.
DataRecordBlock = Struct(
    "dib" / DataInformationBlock,
    "vib" / ValueInformationBlock,
    "data_offset" / Tell,  # where the data field starts (the fast path's plan needs it)
    "data" / Switch(this.dib.dif.data_field, {field: construct for field, (_, construct) in DATA_FIELD.items()}),
)


def _diagnose(data: bytes, start: int) -> str:
    """Why a record did not parse: the checks libmbus and the standard name."""
    pos = start
    dif = data[pos]
    pos += 1
    difes = 0
    extension = dif & 0x80
    while extension:
        if pos >= len(data):
            return "premature end of DIB (DIFE expected)"
        extension = data[pos] & 0x80
        difes += 1
        pos += 1
    if difes > MAX_DIFES:
        return f"{difes} DIFEs: more than ten"
    if pos >= len(data):
        return "premature end of record (VIF expected)"
    vif = data[pos]
    pos += 1
    if vif & 0x7F == 0x7C:
        if pos >= len(data) or pos + 1 + data[pos] > len(data):
            return "premature end of plain-text VIF"
        pos += 1 + data[pos]
    extension = vif & 0x80
    vifes = 0
    while extension:
        if pos >= len(data):
            return "premature end of VIB (VIFE expected)"
        extension = data[pos] & 0x80
        vifes += 1
        pos += 1
    if vifes > MAX_VIFES:
        return f"{vifes} VIFEs: more than ten"
    if dif & 0x0F == 0x0D and pos < len(data) and data[pos] >= 0xF7:
        return f"LVAR {data[pos]:02X}h reserved"
    return "premature end of data field"


def parse_items(data: bytes) -> tuple[list[Any], bytes | None, bool]:
    """Parse the variable data structure into Construct containers, one per data record.

    Returns (records, manufacturer data or None, more records follow). Idle fillers are skipped;
    DIF 0Fh/1Fh ends the records and the rest is manufacturer data.
    """
    records, _, manufacturer, more = parse_items_located(data)
    return records, manufacturer, more


def parse_items_located(data: bytes) -> tuple[list[Any], list[int], bytes | None, bool]:
    """As :func:`parse_items`, also giving the offsets of the bytes that fix the layout: every
    record's start, each idle filler and the DIF 0Fh/1Fh marker (in ``skipped``)."""
    records: list[Any] = []
    skipped: list[int] = []
    stream = io.BytesIO(data)
    end = len(data)
    while (pos := stream.tell()) < end:
        dif = data[pos]
        if dif in (DIF_IDLE_FILLER, DIF_GLOBAL_READOUT):
            skipped.append(pos)
            stream.seek(pos + 1)
            continue
        if dif in (DIF_MANUFACTURER_DATA, DIF_MORE_RECORDS_FOLLOW):
            skipped.append(pos)
            return records, skipped, data[pos + 1 :], dif == DIF_MORE_RECORDS_FOLLOW
        if dif & 0x0F == 0x0F:
            raise DecodeError(f"DIF {dif:02X}h at byte {pos}: reserved special function (EN 13757-3 Table 9)")
        try:
            record = DataRecordBlock.parse_stream(stream)
            record.start, record.end = pos, stream.tell()
            records.append(record)
        except (ConstructError, DecodeError, UnicodeDecodeError) as error:
            reason = _diagnose(data, pos)
            raise DecodeError(f"data record at byte {pos}: {reason}") from error
    return records, skipped, None, False
