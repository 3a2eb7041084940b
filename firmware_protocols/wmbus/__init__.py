"""Wireless M-Bus (EN 13757-4) with OMS security, and a USB receiver's serial framing.

Layers, one module each: :mod:`.link` (link header, CRC blocks of frame formats A and B),
:mod:`.ell` (extended link layer, AES-CTR), :mod:`.afl` (authentication and fragmentation layer),
:mod:`.tpl` (transport layer headers and configuration field), :mod:`.security` (modes 5 and 7),
:mod:`.kdf` (OMS key derivation), :mod:`.telegram` (all of them in order, both ways),
:mod:`.decode` (to normalised records), :mod:`.build` (for simulators) and :mod:`.receiver`
(IMST iM871A host controller interface).

Gateway: ``ReceiverStreamParser().feed(serial_bytes)`` gives telegrams as the receiver hands them on
(CRCs removed), ``telegram_address(telegram, crcs=False)`` the meter it is from (no key needed), then
``decode_telegram(telegram, keys, crcs=False)`` gives header fields and records.
Simulator: ``build_telegram(records, ..., key=key, crcs=False)`` then ``receiver.build_indication``
gives the bytes a receiver would write to its serial port; with ``crcs=True`` (the default) the
telegram is as sent on air.
"""

from firmware_protocols.wmbus.build import build_telegram, make_telegram
from firmware_protocols.wmbus.decode import decode_telegram
from firmware_protocols.wmbus.errors import (
    AuthenticationError,
    CrcError,
    DecodeError,
    KeyMissingError,
    TruncatedTelegramError,
    UnknownCiError,
    UnsupportedSecurityError,
    WrongKeyError,
)
from firmware_protocols.wmbus.telegram import MeterAddress, Telegram, encode_telegram, parse_telegram, telegram_address

__all__ = [
    "AuthenticationError",
    "CrcError",
    "DecodeError",
    "KeyMissingError",
    "MeterAddress",
    "Telegram",
    "TruncatedTelegramError",
    "UnknownCiError",
    "UnsupportedSecurityError",
    "WrongKeyError",
    "build_telegram",
    "decode_telegram",
    "encode_telegram",
    "make_telegram",
    "parse_telegram",
    "telegram_address",
]
