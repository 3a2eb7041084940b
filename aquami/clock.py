"""The time source every part takes: the wall clock in UTC, or a simulated one in tests and rigs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
