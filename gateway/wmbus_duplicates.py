"""The telegrams a wireless M-Bus receiver took lately, to drop the same telegram heard again.

One telegram can be heard twice: directly and through a repeater, or by two receivers. A telegram
whose meter, access number and records were already taken within the bus's ``duplicate_window_s``
is the same one, not a second reading. The filter is the receiver's memory's
(:class:`gateway.wmbus_unconfigured.ReceiverMemory`), not its listener's: a reload of the gateway's
configuration makes the listener anew, and a repeater's copy arriving just after it was taken as a
second reading (stored by the collector as another row, its ``ts`` a few seconds on, the same
register).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any


class DuplicateFilter:
    """Remembers what was taken for ``window_s`` seconds (monotonic time)."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str], float] = {}

    def first_time(self, meter_id: str, access_no: int, records: Any) -> bool:
        now = self.clock()
        if len(self._seen) > 10_000 or (self._seen and next(iter(self._seen.values())) < now - self.window_s):
            self._seen = {k: t for k, t in self._seen.items() if t >= now - self.window_s}
        digest = hashlib.blake2b(json.dumps(records, sort_keys=True).encode(), digest_size=8).hexdigest()
        key = (meter_id, access_no, digest)
        seen_at = self._seen.get(key)
        if seen_at is not None and now - seen_at <= self.window_s:
            return False
        self._seen[key] = now
        return True

    def forget(self, meter_ids: Iterable[str]) -> None:
        """Forget what was taken from ``meter_ids`` (no longer configured, or configured anew)."""
        gone = set(meter_ids)
        if gone:
            self._seen = {k: t for k, t in self._seen.items() if k[0] not in gone}
