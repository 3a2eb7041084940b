"""The variable data records after an application header (EN 13757-3:2018 clause 6).

``decode_records`` is the public entry point, used by wired M-Bus and, after decryption, by wireless
M-Bus. It runs the fast path (a decoding plan cached per record layout) and falls back to the
Construct reference path for layouts it has not yet seen.
"""

from __future__ import annotations

from firmware_protocols.mbus.fastpath import decode_body
from firmware_protocols.mbus.normalise import normalise
from firmware_protocols.mbus.record import parse_items
from firmware_protocols.records import DataRecord


def decode_records_reference(data: bytes) -> tuple[list[DataRecord], str | None, bool]:
    """The Construct path: parse every record with ``record.DataRecordBlock`` and normalise it."""
    items, manufacturer, more = parse_items(bytes(data))
    records = [normalise(item) for item in items]
    return records, (manufacturer.hex() if manufacturer is not None else None), more


def decode_records(data: bytes) -> tuple[list[DataRecord], str | None, bool]:
    """Records after the header -> (records, manufacturer data as hex or None, more records follow).

    Raises :class:`firmware_protocols.errors.DecodeError` for any malformed record.
    """
    records, manufacturer, more = decode_body(bytes(data))
    return [DataRecord(**record) for record in records], manufacturer, more
