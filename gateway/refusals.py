"""The wait before what an MQTT 5 broker refused (a failure PUBACK: not authorised, quota exceeded)
goes again. Not on the next loop turn: a refusal that lasts would have it resent 20 times a second,
for as long as the broker's rules stay as they are. The wait grows while the refusals go on, and
starts afresh once the broker takes one. Batches and events each have their own: a broker may
refuse one topic and take the other."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from gateway.backoff import Backoff

_REFUSED_MIN_S = 1.0  # the first wait before a refused message goes again


class RefusalHold:
    """Sends of one kind held back after a refusal. ``clock`` and ``rng`` (the waits' jitter): the
    real ones but in a model test."""

    def __init__(
        self, maximum_s: float, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None
    ) -> None:
        self._backoff = Backoff(min(_REFUSED_MIN_S, maximum_s), maximum_s, rng)
        self._clock = clock
        self._until = 0.0

    def refused(self) -> float:
        """A refusal came back: the seconds until the next try. The others of a window, refused
        with it, wait as long (the wait grows once per window, not once per message)."""
        now = self._clock()
        if now >= self._until:
            self._until = now + self._backoff.next()
        return self._until - now

    def accepted(self) -> None:
        """The broker took one: the next refusal waits the shortest again."""
        self._backoff.reset()

    def holding(self) -> bool:
        """Within the wait after a refusal: nothing of this kind goes."""
        return self._clock() < self._until
