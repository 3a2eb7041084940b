"""Exponential backoff with jitter, for reconnecting to the broker and retrying a meter, and the
stoppable pause that waits are spent in.

"Equal jitter": the n-th wait is drawn from [d/2, d] where d = min(maximum, minimum × 2ⁿ), so waits
grow like plain exponential backoff but many gateways that lost the same broker at the same moment
do not all come back in the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


class Backoff:
    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None):
        if minimum < 0 or maximum < minimum:
            raise ValueError("backoff needs 0 <= minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The upper bound of the next wait."""
        return min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 60))

    def next(self) -> float:
        """The next wait in seconds; each call doubles the bound until the maximum."""
        ceiling = self.ceiling()
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or until ``stop`` is set if that comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
