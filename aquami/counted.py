"""A count and its noun in the words an operator reads: ``1 message``, ``3 messages``."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, singular for exactly one (``plural``, else ``noun`` + "s", otherwise)."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def waits(count: int) -> str:
    """The verb for ``count`` messages that wait: ``1 message waits``, ``2 messages wait``."""
    return f"{counted(count, 'message')} {'waits' if count == 1 else 'wait'}"
