"""Whether text a person gives shows anything: one check for Open311's fields, a person's words
(server.words: notes, reasons) and an API key's name (server.auth).

A zero-width space (U+200B), a byte order mark, the bidirectional marks and the Hangul fillers
(U+3164 and its kin, which Unicode files as letters) show nothing; text of them alone says nothing
and names no one, though it passes ``str.strip()`` and a word-character pattern.
"""

from __future__ import annotations

import unicodedata

#: Characters that show nothing and are neither whitespace nor a control or format character
#: (Unicode's Default_Ignorable_Code_Point among letters and marks: Hangul fillers, the combining
#: grapheme joiner, variation selectors, Khmer's inherent vowels), and the blank Braille pattern,
#: which renders as a space.
SHOWS_NOTHING = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)

#: The characters of :data:`SHOWS_NOTHING` that Unicode files as letters (the Hangul fillers U+115F,
#: U+1160, U+3164, U+FFA0): a word pattern that takes letters must leave these out.
INVISIBLE_LETTERS = frozenset(c for c in SHOWS_NOTHING if unicodedata.category(c).startswith(("L", "N")))


def invisible(character: str) -> bool:
    """Whether ``character`` shows nothing on its own: whitespace, a control or format character
    (Cc, Cf: U+200B ZERO WIDTH SPACE, U+FEFF, the bidirectional marks), or one of :data:`SHOWS_NOTHING`."""
    return character.isspace() or unicodedata.category(character) in ("Cc", "Cf") or character in SHOWS_NOTHING


def named(character: str) -> str:
    """``U+3164 HANGUL FILLER``: a character a person cannot see, named so they can find it."""
    return f"U+{ord(character):04X} {unicodedata.name(character, '')}".rstrip()


def nothing_shown(text: str) -> str | None:
    """Why ``text`` shows nothing (naming its first invisible character that is not a blank), or None
    when something in it is visible."""
    if not all(invisible(c) for c in text):
        return None
    shown = next((c for c in text if not c.isspace()), None)
    example = f" ({named(shown)})" if shown is not None else ""
    return f"needs a visible character: blanks and invisible characters{example} alone say nothing"


def shows_something(text: str) -> str:
    """``text``, unchanged, when something in it is visible; ValueError saying why not otherwise."""
    problem = nothing_shown(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def escaped(text: str) -> str:
    """``text`` with what shows nothing written out (``alice\\u200b``, ``\\u3164``), so a reader sees
    it; every visible character as it is (``José``, an ordinary space). Backslashes are doubled when
    anything is written out, so ``\\u200b`` typed is told from U+200B; a text with nothing to write
    out is returned unchanged."""
    if not any(map(unseen, text)):
        return text
    return "".join(_escaped_character(c) for c in text)


def unseen(character: str) -> bool:
    """Whether ``character`` cannot be seen where it stands: :func:`invisible` or not printable, but
    for the ordinary space, which a reader sees between words."""
    return character != " " and (invisible(character) or not character.isprintable())


def _escaped_character(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if unseen(c):
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return c
