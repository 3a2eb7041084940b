"""Transport layer of EN 13757-7:2018 clause 7: the CI field, the TPL header and its configuration field.

The short and long headers are the ones wired M-Bus uses (:mod:`firmware_protocols.mbus.header`);
their 16-bit "signature" is the configuration field, whose meaning this module gives.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from construct import BitsInteger, BitStruct, ByteSwapped, Const, Flag, Int8ul, Struct

from firmware_protocols.mbus.header import LongHeader, ShortHeader

CI_LONG = 0x72
CI_NONE = 0x78
CI_SHORT = 0x7A

# EN 13757-7:2018 7.3 "Structure of short TPL header" (CI = 0x7A).
ShortTpl = Struct("ci_field" / Const(CI_SHORT, Int8ul), "header" / ShortHeader)
# EN 13757-7:2018 7.4 "Structure of long TPL header" (CI = 0x72).
LongTpl = Struct("ci_field" / Const(CI_LONG, Int8ul), "header" / LongHeader)
# EN 13757-7:2018 7.2 "Structure of none TPL header" (CI = 0x78): records follow at once, unencrypted.
NoneTpl = Struct("ci_field" / Const(CI_NONE, Int8ul))

TPL_BY_CI: dict[int, Struct] = {CI_SHORT: ShortTpl, CI_LONG: LongTpl, CI_NONE: NoneTpl}

# EN 13757-7:2018 7.5 (CI-field dependent elements), "Configuration Field": the layout of security
# modes 5 and 7 (16 bits, least significant byte first).
ConfigurationField = ByteSwapped(
    BitStruct(
        "bidirectional" / Flag,  # bit 15 B
        "accessibility" / Flag,  # bit 14 A
        "synchronous" / Flag,  # bit 13 S
        "security_mode" / BitsInteger(5),  # bits 12..8 M
        "encrypted_blocks" / BitsInteger(4),  # bits 7..4 N: 16-byte blocks encrypted
        "content" / BitsInteger(2),  # bits 3..2 C: content of message
        "repeated_access" / Flag,  # bit 1 RA
        "hop_counter" / Flag,  # bit 0 HC
    )
)

# EN 13757-7:2018 7.5, "Configuration Field Extension" (follows the configuration field in mode 7).
ConfigurationFieldExtension = BitStruct(
    "reserved" / BitsInteger(2),
    "kdf_selection" / BitsInteger(2),  # 0: key used as it is, 1: OMS key derivation (AES-CMAC)
    "key_id" / BitsInteger(4),
)

SECURITY_MODE_NONE = 0
SECURITY_MODE_AES_CBC_IV = 5
SECURITY_MODE_AES_CBC_NO_IV = 7


def configuration_of(header: Any) -> Any:
    """The configuration field of a parsed short or long header (treat the result as read-only)."""
    return _configuration(header.signature)


@lru_cache(maxsize=256)
def _configuration(signature: int) -> Any:
    # A meter sends the same configuration in every telegram, and bit fields parse slowly: parse once.
    return ConfigurationField.parse(signature.to_bytes(2, "little"))


def signature_of(configuration: dict[str, Any]) -> int:
    """A configuration field's values to the header's 16-bit signature."""
    return int.from_bytes(ConfigurationField.build(configuration), "little")


def configuration_json(configuration: Any) -> dict[str, Any]:
    return {key: value for key, value in configuration.items() if not key.startswith("_")}
