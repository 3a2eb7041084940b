"""A meter's AES-128 key as a technician copies it from the key sheet: 32 hexadecimal digits.

A key written another way (``0x`` before it, colons or dashes between the bytes, a digit missing)
was refused with ``an AES-128 key is 32 hexadecimal digits`` whatever was wrong, so the technician
compared 32 digits by eye to find it. The reason now says what is wrong, without the key's text:
it is a secret, and error messages end up in logs.
"""

from __future__ import annotations

import string

AES_KEY_DIGITS = 32


def aes_key(text: str) -> bytes:
    """The 16 bytes of ``text``, 32 hex digits (spaces between bytes allowed); ``ValueError`` saying
    what is wrong with it otherwise, never quoting it."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) == AES_KEY_DIGITS // 2:
        return key
    raise ValueError(why_not_an_aes_key(text))


def why_not_an_aes_key(text: str) -> str:
    """What is wrong with ``text`` as an AES-128 key, in words, the key itself not shown."""
    digits = "".join(text.split())
    if digits[:2] in ("0x", "0X"):
        return f"an AES-128 key is {AES_KEY_DIGITS} hexadecimal digits, written without 0x before them"
    others = sorted({c for c in digits if c not in string.hexdigits})
    if others:
        shown = ", ".join(repr(c) if c.isprintable() and c.isascii() else f"U+{ord(c):04X}" for c in others[:5])
        return (
            f"an AES-128 key is {AES_KEY_DIGITS} hexadecimal digits (0-9, A-F) and nothing else: "
            f"this one has {shown} in it; write the digits alone"
        )
    if len(digits) != AES_KEY_DIGITS:
        return f"an AES-128 key is {AES_KEY_DIGITS} hexadecimal digits: this one has {len(digits)}"
    return f"an AES-128 key is {AES_KEY_DIGITS} hexadecimal digits: a space splits a byte of this one"
