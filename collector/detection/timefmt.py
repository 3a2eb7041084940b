"""ISO 8601 UTC text for times (``Z`` suffix), and back."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("naive datetime: times are UTC and timezone-aware")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso_utc(text: str) -> datetime:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone: times must be UTC")
    return t.astimezone(UTC)
