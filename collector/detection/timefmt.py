"""ISO 8601 UTC text for times (``Z`` suffix). Files' times are read by ``collector.detection.files.times``
(``aquami.stored_times``' rules)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("naive datetime: times are UTC and timezone-aware")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
