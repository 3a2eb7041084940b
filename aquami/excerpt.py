"""A value a person gave, as an error quotes it: whole when short, else its start and its length.

A frame of 100,000 hex digits given to ``aquami decode``, or a ``--from`` of as many characters,
was echoed whole: one error line of 100,000 characters, the mistake in it lost. Past
:data:`WHOLE_MAX` characters only the first :data:`HEAD` are quoted, then how long the value was.
"""

from __future__ import annotations

import string

#: The longest value quoted whole: a 32-byte frame in hex, any real time or id.
WHOLE_MAX = 64
#: How much of a longer value is quoted.
HEAD = 32

_HEX_DIGITS = frozenset(string.hexdigits)


def quoted(text: str) -> str:
    """``repr(text)`` as an error quotes a value (``{text!r}``), or its first :data:`HEAD` characters
    so quoted then ``… (N characters)``."""
    if len(text) <= WHOLE_MAX:
        return repr(text)
    return f"{text[:HEAD]!r}… ({len(text)} characters)"


def frame_excerpt(text: str) -> str:
    """A frame given as hex, as a decode error echoes it: as written (less outer blanks) when short,
    or its blanks dropped when that is short; else its first :data:`HEAD` hex digits then ``… (N
    bytes)`` (``… (N characters)`` when it is no whole number of bytes in hex)."""
    written = text.strip()
    digits = "".join(written.split())
    if len(written) <= WHOLE_MAX or len(digits) <= WHOLE_MAX:
        return written if len(written) <= WHOLE_MAX else digits
    whole_bytes = len(digits) % 2 == 0 and _HEX_DIGITS.issuperset(digits)
    size = f"{len(digits) // 2} bytes" if whole_bytes else f"{len(digits)} characters"
    return f"{digits[:HEAD]}… ({size})"
