"""CRC-16 of EN 13757-4 (polynomial 0x3D65, initial 0, result inverted), as link layer and ELL use it.

Published as CRC-16/EN-13757 in the catalogue of parametrised CRCs: check value 0xC2B7 for ``b"123456789"``.
"""

from __future__ import annotations

_POLYNOMIAL = 0x3D65


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _POLYNOMIAL) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _table()


def crc16_en13757(data: bytes) -> int:
    """The CRC as a 16-bit integer; the link layer sends it big-endian (most significant byte first)."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc ^ 0xFFFF
