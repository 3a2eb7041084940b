"""A person's words (a note, a correction's or a dismissal's reason: server.words) need a letter or a
digit that shows. Before, the pattern's ``[^\\W_]`` took any word character of pydantic's regular
expressions, so three Hangul fillers (U+3164, which Unicode files as a letter) or three combining
accents alone were a reason that says nothing, written on the record."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from server.visible import INVISIBLE_LETTERS, invisible
from server.words import WORDS_PATTERN

_WORDS = TypeAdapter(Annotated[str, Field(pattern=WORDS_PATTERN)])


def _taken(text: str) -> bool:
    try:
        _WORDS.validate_python(text)
    except ValidationError:
        return False
    return True


def test_a_word_is_a_letter_or_digit_that_shows_every_character_asked():
    """Every assigned character but NUL and the surrogates, alone: taken exactly when Unicode files it
    as a letter or a number and server.visible does not find it invisible (the same check as Open311's
    fields and key names)."""
    differ = []
    for point in range(1, 0x110000):
        character = chr(point)
        category = unicodedata.category(character)
        if category in ("Cn", "Cs"):
            continue
        shows_a_word = category[0] in "LN" and not invisible(character)
        if _taken(character * 3) != shows_a_word:
            differ.append(f"U+{point:04X}")
    assert differ == []


def test_hangul_fillers_and_marks_alone_are_no_words_but_words_beside_them_are_kept():
    assert {"\u115f", "\u1160", "\u3164", "\uffa0"} == INVISIBLE_LETTERS
    for nothing in ("\u3164\u3164\u3164", "\u115f\u1160\uffa0", "\u0301\u0301\u0301", "\u3164 \u200b \u0301"):
        assert not _taken(nothing), repr(nothing)
    for words in ("ok\u3164", "\u3164\u3164 7", "é\u0301\u0301", "水漏れ", "\u200bleak"):
        assert _taken(words), repr(words)
