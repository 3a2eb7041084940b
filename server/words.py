"""A person's words in a request (a correction's reason, a dismissal's, an enquiry's note)."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

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
    ``--reason`` (``aquami server withdraw-installation``), which no request model checks. Whether
    it holds a letter or digit is asked of :data:`WORDS_PATTERN` itself, in pydantic's engine: its
    Unicode tables are newer than Python's ``unicodedata`` (3.11's is Unicode 14), which took
    ``::`` and U+31350, a CJK letter of Unicode 15, for no words where a request's field takes it."""
    if "\x00" in text:
        return "contains a NUL character, which the database stores in no text"
    if not 3 <= len(text) <= max_length:
        return f"has {len(text)} characters; 3 to {max_length}"
    try:
        _held_to_words_pattern().validate_python(text)
    except ValidationError:
        return "says nothing: words are needed, not only blanks, marks or invisible characters"
    return None


@cache
def _held_to_words_pattern() -> TypeAdapter[str]:
    return TypeAdapter(Annotated[str, StringConstraints(pattern=WORDS_PATTERN)])
