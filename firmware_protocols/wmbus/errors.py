"""The wireless decoder's errors: each a :class:`~firmware_protocols.errors.DecodeError`, each saying where.

Callers that only care whether a telegram decoded catch ``DecodeError``; those that act on the cause
(ask for a key, count radio noise) catch the subclass.
"""

from __future__ import annotations

from firmware_protocols.errors import DecodeError, KeyMissingError


class TruncatedTelegramError(DecodeError):
    """The telegram ends before a field its own headers announce."""


class CrcError(DecodeError):
    """A link-layer block's CRC (EN 13757-4) does not match: the radio garbled it."""


class UnknownCiError(DecodeError):
    """A CI field this decoder does not know, or knows but does not support (e.g. fragmented AFL)."""


class UnsupportedSecurityError(DecodeError):
    """A security mode or key derivation other than OMS modes 0, 5 and 7 (KDF 0 or 1)."""


class AuthenticationError(DecodeError):
    """A security mode 7 telegram not authenticated: its AFL MAC does not match although the key
    decrypts (the telegram was altered), or it lacks what OMS security profile B requires (an AFL
    with message counter and AES-CMAC, key derivation KDF-A), so nothing could show it unaltered."""


class WrongKeyError(KeyMissingError):
    """A key was given for the meter but the decrypted data fails its check: the key is wrong."""


__all__ = [
    "AuthenticationError",
    "CrcError",
    "DecodeError",
    "KeyMissingError",
    "TruncatedTelegramError",
    "UnknownCiError",
    "UnsupportedSecurityError",
    "WrongKeyError",
]
