"""TPL security of OMS Vol. 2 / EN 13757-7:2018 clause 9: modes 5 and 7, both AES-128-CBC.

* Mode 5: the initialisation vector is M-field (2 bytes), A-field (6 bytes) and the access number
  eight times; the key is the meter's own.
* Mode 7: the initialisation vector is zero; the key is Kenc, derived per message (:mod:`.kdf`).

Only the first N 16-byte blocks (N from the configuration field) are encrypted; any bytes after them
travel in the clear. A correct decryption starts with the two verification bytes 0x2F 0x2F; anything
else means a wrong key, never records.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware_protocols.wmbus.errors import WrongKeyError

BLOCK = 16
VERIFICATION = b"\x2f\x2f"
ZERO_IV = bytes(BLOCK)


def mode5_iv(manufacturer_and_address: bytes, access_no: int) -> bytes:
    """The mode 5 IV from the 8 bytes M and A (link layer, or the long TPL header's) and ACC."""
    return manufacturer_and_address + bytes([access_no]) * 8


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def check_verification(plain: bytes, meter_id: str, mode: int) -> None:
    """Raise :class:`WrongKeyError` naming the meter unless the plain text starts with 0x2F 0x2F."""
    if plain[:2] != VERIFICATION:
        raise WrongKeyError(
            f"meter {meter_id}: decryption (security mode {mode}) failed its 2F 2F check; the key is wrong"
        )


def pad(plain: bytes) -> bytes:
    """Fill to whole blocks with 0x2F idle fillers (EN 13757-3), as meters do before encrypting."""
    return plain + VERIFICATION[:1] * (-len(plain) % BLOCK)
