"""A whole wired M-Bus frame to a JSON-ready dict: EN 13757-2 link layer, EN 13757-3 application layer.

The CI field (EN 13757-3:2018 clause 5, Table 2) picks the application layer: 72h variable data with
the long header, 7Ah with the short header, 78h with none, 73h the fixed data structure, 70h a
report of application errors, 71h a report of alarms.
"""

from __future__ import annotations

from typing import Any

from construct import ConstructError

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import link
from firmware_protocols.mbus.fastpath import decode_body
from firmware_protocols.mbus.fixed import decode_fixed
from firmware_protocols.mbus.header import (
    LONG_HEADER_SIZE,
    MEDIUM,
    SHORT_HEADER_SIZE,
    LongHeader,
    ShortHeader,
    manufacturer_from_bytes,
)
from firmware_protocols.mbus.master import decode_master_user_data
from firmware_protocols.mbus.records import decode_records_reference

CI_LONG_HEADER = 0x72
CI_SHORT_HEADER = 0x7A
CI_NO_HEADER = 0x78
CI_FIXED = 0x73
CI_APPLICATION_ERROR = 0x70
CI_ALARM = 0x71

#: EN 13757-3:2018 clause 5, Table 3 "Codes for general application errors".
APPLICATION_ERRORS = {
    0: "unspecified_error",
    1: "unimplemented_ci",
    2: "buffer_too_long",
    3: "too_many_records",
    4: "premature_end_of_record",
    5: "too_many_difes",
    6: "too_many_vifes",
    7: "reserved",
    8: "application_busy",
    9: "too_many_readouts",
}


def _empty_application() -> dict[str, Any]:
    return {
        "id": None,
        "manufacturer": None,
        "version": None,
        "medium": None,
        "access_no": None,
        "status": None,
        "signature": None,
        "records": [],
        "manufacturer_data": None,
        "more_records_follow": False,
    }


def decode_variable(ci: int, user_data: bytes) -> dict[str, Any]:
    """Header (per CI) and records of a variable data structure, by the Construct path."""
    return _decode_variable(ci, user_data, fast=False)


def _decode_variable(ci: int, user_data: bytes, fast: bool) -> dict[str, Any]:
    result = _empty_application()
    try:
        if ci == CI_LONG_HEADER:
            if len(user_data) < LONG_HEADER_SIZE:
                raise DecodeError(f"long header: {len(user_data)} bytes, needs 12")
            header = LongHeader.parse(user_data)
            result.update(
                id=header.identification,
                manufacturer=header.manufacturer,
                version=header.version,
                medium=header.medium,
            )
            body = user_data[LONG_HEADER_SIZE:]
        elif ci == CI_SHORT_HEADER:
            if len(user_data) < SHORT_HEADER_SIZE:
                raise DecodeError(f"short header: {len(user_data)} bytes, needs 4")
            header = ShortHeader.parse(user_data)
            body = user_data[SHORT_HEADER_SIZE:]
        else:
            header = None
            body = user_data
    except ConstructError as error:
        raise DecodeError(f"application header: {error}") from None
    if header is not None:
        result.update(access_no=header.access_no, status=header.status, signature=header.signature)
    if fast:
        result["records"], manufacturer_data, more = decode_body(body)
    else:
        records, manufacturer_data, more = decode_records_reference(body)
        result["records"] = [record.to_json() for record in records]
    result["manufacturer_data"] = manufacturer_data
    result["more_records_follow"] = more
    return result


def decode_application(ci: int, user_data: bytes, fast: bool = True) -> dict[str, Any]:
    """The application layer of a slave's long frame."""
    if ci in (CI_LONG_HEADER, CI_SHORT_HEADER, CI_NO_HEADER):
        return _decode_variable(ci, user_data, fast)
    if ci == CI_FIXED:
        return decode_fixed(user_data)
    if ci == CI_APPLICATION_ERROR:
        if len(user_data) > 1:
            raise DecodeError(f"application error report: {len(user_data)} bytes, expected at most 1")
        code = user_data[0] if user_data else 0
        result = _empty_application()
        result["application_error"] = APPLICATION_ERRORS.get(code, f"reserved_{code:02x}")
        return result
    if ci == CI_ALARM:
        if len(user_data) != 1:
            raise DecodeError(f"alarm report: {len(user_data)} bytes, expected 1")
        result = _empty_application()
        result["alarm"] = user_data[0]
        return result
    raise DecodeError(f"CI field {ci:02X}h: not a slave-to-master application layer this decoder knows")


def decode_frame_reference(data: bytes) -> dict[str, Any]:
    """:func:`decode_frame` entirely through the Construct definitions (the reference path)."""
    data = bytes(data)
    fields = link.parse_link(data)
    if fields["frame_type"] in ("single", "short"):
        return fields
    user_data = fields.pop("user_data")
    if fields["c_field"] & 0x40:  # PRM: from the master
        fields.update(decode_master_user_data(fields["ci_field"], user_data))
        return fields
    fields.update(decode_application(fields["ci_field"], user_data, fast=False))
    return fields


_RSP_UD_NAMES = {c: link.c_field_name(c) for c in range(0x40)}


def decode_frame(data: bytes) -> dict[str, Any]:
    """Decode a whole EN 13757-2 frame (E5h, short, control or long) to a JSON-ready dict.

    A slave's RSP_UD gives the link fields, the header (``id``, ``manufacturer``, ``version``,
    ``medium``, ``access_no``, ``status``, ``signature``), ``records`` (``DataRecord.to_json()``),
    ``manufacturer_data`` (hex or None) and ``more_records_follow``. A master's frame (SND_NKE,
    REQ_UD2, SND_UD) gives its link fields and what it asks for. Raises ``DecodeError`` otherwise.
    """
    length = len(data)
    if (
        length > 21
        and data[0] == 0x68
        and data[3] == 0x68
        and data[1] == data[2]
        and length == data[1] + 6
        and data[-1] == 0x16
        and data[6] == CI_LONG_HEADER
        and data[4] < 0x40  # from the slave
        and sum(data[4:-2]) & 0xFF == data[-2]
    ):
        # The link layer checked by hand, exactly as LongFrame does; the header read in place.
        records, manufacturer_data, more = decode_body(bytes(data[19:-2]))
        return {
            "frame_type": "long",
            "c_field": data[4],
            "function": _RSP_UD_NAMES[data[4]],
            "a_field": data[5],
            "ci_field": CI_LONG_HEADER,
            "id": data[10:6:-1].hex().upper(),
            "manufacturer": manufacturer_from_bytes(data[11:13]),
            "version": data[13],
            "medium": MEDIUM[data[14]],
            "access_no": data[15],
            "status": data[16],
            "signature": data[17] | (data[18] << 8),
            "records": records,
            "manufacturer_data": manufacturer_data,
            "more_records_follow": more,
        }
    data = bytes(data)
    fields = link.parse_link(data)
    if fields["frame_type"] in ("single", "short"):
        return fields
    user_data = fields.pop("user_data")
    if fields["c_field"] & 0x40:  # PRM: from the master
        fields.update(decode_master_user_data(fields["ci_field"], user_data))
        return fields
    fields.update(decode_application(fields["ci_field"], user_data))
    return fields


def decode_master_frame(data: bytes) -> dict[str, Any]:
    """What a slave receives: SND_NKE, REQ_UD1/2 (short frames) or SND_UD (selection, data send).

    Raises ``DecodeError`` for anything a master does not send (E5h, a slave's RSP_UD).
    """
    fields = decode_frame_reference(data)
    if fields["frame_type"] == "single" or not fields["c_field"] & 0x40:
        raise DecodeError("not a master's frame: E5h or a C-field without PRM (EN 13757-2 clause 5.3)")
    return fields
