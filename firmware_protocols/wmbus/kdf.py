"""OMS key derivation (OMS Specification Vol. 2, "Key Derivation Function"; EN 13757-7:2018 clause 9).

Security mode 7 never uses the meter's master key K directly: each message gets ephemeral keys
``K_x = AES-CMAC(K, DC || MCR || ID || 0x07 * 7)``, where DC is the derivation constant (0x00 Kenc
and 0x01 Kmac for messages from the meter), MCR the AFL message counter and ID the identification
as transmitted (four bytes, least significant first). The padding 0x07 bytes fill the one block.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

#: Derivation constants for messages from the meter.
DC_KENC_FROM_METER = 0x00
DC_KMAC_FROM_METER = 0x01
_PADDING = b"\x07" * 7


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B, RFC 4493), the full 16 bytes."""
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def derive_key(master_key: bytes, derivation_constant: int, message_counter: int, identification: bytes) -> bytes:
    """The ephemeral key for one message, ``identification`` being the four transmitted ID bytes."""
    block = bytes([derivation_constant]) + message_counter.to_bytes(4, "little") + identification + _PADDING
    return aes_cmac(master_key, block)
