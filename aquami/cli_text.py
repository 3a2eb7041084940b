"""Text options checked before any work: an id, a name or a word given empty, blank, with a line
break or a NUL in it, or far too long is refused by the option's name (exit 2).

Before, such text went on as it was: ``--account ''`` or ``--gateway ' '`` asked the database for a
row none has, ``--client-id`` of 100 000 characters reached the broker, ``--name 'a<NUL>b'`` was
PostgreSQL's error. None of them can be meant; saying so up front names the option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH, is_identifier

#: The longest URL an option takes: far beyond a real one, short enough to say in one line.
URL_MAX_LENGTH = 2000
#: The longest free text an option takes (a key's name, a client id): far beyond any real one.
TEXT_MAX_LENGTH = 200

Value = TypeVar("Value", str, list[str], None)


def text_problem(text: str, limit: int = TEXT_MAX_LENGTH) -> str | None:
    """Why ``text`` is no option's text, or None. Said without the text: it may be 100 000 characters."""
    if not text:
        return "is empty"
    if not text.strip():
        return "is blank"
    if "\x00" in text:
        return "contains a NUL character, which the database stores in no text"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "holds a control character (a line break, a tab or a NUL)"
    if len(text) > limit:
        return f"has {len(text)} characters; at most {limit}"
    return None


def _each(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def checked_text(option: str, limit: int = TEXT_MAX_LENGTH, *, empty_ok: bool = False) -> Callable[[Value], Value]:
    """An option's callback refusing text that is empty (unless ``empty_ok``: a default meaning
    "none"), blank, has a control character or is longer than ``limit``; a list option's each value."""

    def check(value: Value) -> Value:
        for text in _each(value):
            problem = None if empty_ok and text == "" else text_problem(text, limit)
            if problem is not None:
                raise typer.BadParameter(problem, param_hint=option)
        return value

    return check


def checked_identifier(option: str) -> Callable[[Value], Value]:
    """An option's callback for a meter's, a bus's or a gateway's id: the readings' schema's
    identifier (a letter or digit, then those and ``._:-``; at most 64 characters)."""

    def check(value: Value) -> Value:
        for text in _each(value):
            if len(text) > IDENTIFIER_MAX_LENGTH:  # not said whole: it may be 100 000 characters
                problem = f"has {len(text)} characters; an identifier has at most {IDENTIFIER_MAX_LENGTH}"
            elif not is_identifier(text):
                problem = f"{text!r} is no identifier (letters, digits and . _ : -, at most 64)"
            else:
                problem = None
            if problem is not None:
                raise typer.BadParameter(problem, param_hint=option)
        return value

    return check
