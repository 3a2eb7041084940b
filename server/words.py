"""A person's words in a request (a correction's reason, a dismissal's, an enquiry's note)."""

from __future__ import annotations

import unicodedata
from typing import Any

from pydantic import Field

from server.visible import INVISIBLE_LETTERS

#: The letters that show nothing (the Hangul fillers), in the pattern's own notation.
_NOT_A_WORD = "".join(f"\\x{{{ord(c):X}}}" for c in sorted(INVISIBLE_LETTERS))

#: At least one letter or digit that shows (:data:`server.visible.INVISIBLE_LETTERS` are none), so
#: that blanks, marks or invisible characters alone say nothing; no NUL anywhere (PostgreSQL's text
#: cannot hold it). pydantic's regular expressions (Rust's ``regex``) read ``\p{L}`` and ``--``
#: (a class less another). Before, ``[^\W_]``: a word character, which took combining marks alone
#: and the Hangul fillers (U+3164) as a word.
WORDS_PATTERN = rf"^[^\x00]*[[\p{{L}}\p{{N}}]--[{_NOT_A_WORD}]][^\x00]*$"


def words_field(max_length: int, description: str, **kwargs: Any) -> Any:
    """A text field of 3 to ``max_length`` characters held to :data:`WORDS_PATTERN`."""
    return Field(min_length=3, max_length=max_length, pattern=WORDS_PATTERN, description=description, **kwargs)


def words_problem(text: str, max_length: int) -> str | None:
    """Why ``text`` is no person's words as :func:`words_field` takes them (3 to ``max_length``
    characters, a letter or digit that shows, no NUL), or None: the same rule for a command's
    ``--reason`` (``aquami server withdraw-installation``), which no request model checks. Unicode's
    letters and digits (categories L and N) are what :data:`WORDS_PATTERN`'s ``\\p{L}``/``\\p{N}`` take."""
    if "\x00" in text:
        return "contains a NUL character, which the database stores in no text"
    if not 3 <= len(text) <= max_length:
        return f"has {len(text)} characters; 3 to {max_length}"
    if not any(unicodedata.category(c)[0] in "LN" and c not in INVISIBLE_LETTERS for c in text):
        return "says nothing: words are needed, not only blanks, marks or invisible characters"
    return None
