"""``decode_telegram``: a received telegram to the normalised JSON-ready dict (see the package doc)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.header import medium_code
from firmware_protocols.mbus.record import parse_items_located
from firmware_protocols.mbus.records import decode_records
from firmware_protocols.wmbus import tpl as tpl_layer
from firmware_protocols.wmbus.afl import afl_json
from firmware_protocols.wmbus.ell import ell_json
from firmware_protocols.wmbus.link import FrameFormat
from firmware_protocols.wmbus.telegram import Telegram, parse_telegram


def decode_telegram(
    data: bytes,
    keys: Mapping[str, bytes],
    *,
    crcs: bool | None = None,
    frame_format: FrameFormat | None = None,
) -> dict[str, Any]:
    """Decode (and decrypt) one telegram as received; keys are looked up by the meter's 8-digit id.

    ``crcs``: ``True`` the link-layer CRCs are present, ``False`` a receiver removed them, ``None``
    (default) tell from the length. ``frame_format``: ``"A"``, ``"B"`` or ``None`` (either).
    Raises :class:`~firmware_protocols.errors.DecodeError` (a subclass saying what) on any bad input;
    :class:`~firmware_protocols.errors.KeyMissingError` names the meter whose key is missing or wrong.

    ``encrypted_records`` says how many of ``records``, from the first, travelled encrypted: the
    ones after them (a record only partly inside the encrypted blocks among them) followed the
    encrypted blocks in the clear (EN 13757-7:2018 7.5: only the first N blocks are encrypted).
    In security mode 7 the AFL MAC authenticates those too; in mode 5 nothing does.
    """
    telegram = parse_telegram(data, keys, crcs=crcs, frame_format=frame_format)
    try:
        records, manufacturer_data, more = decode_records(telegram.application)
    except DecodeError as error:
        raise DecodeError(f"meter {telegram.meter_id}: application data: {error}") from error
    result = _header_json(telegram, length=data[0])
    result["records"] = [record.to_json() for record in records]
    result["encrypted_records"] = _encrypted_records(telegram, len(records))
    result["manufacturer_data"] = manufacturer_data
    result["more_records_follow"] = more
    return result


def _encrypted_records(telegram: Telegram, count: int) -> int:
    """How many of the telegram's ``count`` records, from the first, end inside its encrypted part."""
    encrypted = telegram.encrypted_length
    if encrypted >= len(telegram.application):
        return count
    if encrypted == 0:
        return 0
    # rare (a meter or a forger sending records after the encrypted blocks): where each record ends
    items = parse_items_located(telegram.application)[0]
    return sum(1 for item in items if item.end <= encrypted)


def _header_json(telegram: Telegram, length: int) -> dict[str, Any]:
    link = telegram.link
    tpl = telegram.tpl
    has_header = tpl.ci_field != tpl_layer.CI_NONE
    configuration = tpl_layer.configuration_of(tpl.header) if has_header else None
    result: dict[str, Any] = {
        "frame_format": telegram.frame_format,
        "crcs": telegram.crcs,
        "length": length,
        "c_field": link.c_field,
        "manufacturer": link.manufacturer,
        "id": link.id,
        "version": link.version,
        "device_type": medium_code(link.medium),
        "medium": link.medium,
        "ell": ell_json(telegram.ell) if telegram.ell is not None else None,
        "afl": afl_json(telegram.afl) if telegram.afl is not None else None,
        "ci_field": tpl.ci_field,
        "access_no": tpl.header.access_no if has_header else None,
        "status": tpl.header.status if has_header else None,
        "configuration": tpl_layer.configuration_json(configuration) if configuration is not None else None,
        "security_mode": telegram.security_mode,
        "meter": None,
    }
    if telegram.configuration_extension is not None:
        result["configuration_extension"] = tpl_layer.configuration_json(telegram.configuration_extension)
    if tpl.ci_field == tpl_layer.CI_LONG:
        header = tpl.header
        result["meter"] = {
            "manufacturer": header.manufacturer,
            "id": header.identification,
            "version": header.version,
            "device_type": medium_code(header.medium),
            "medium": header.medium,
        }
    return result
