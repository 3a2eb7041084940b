"""What an MQTT 5 broker refused (a failure PUBACK: not authorised, quota exceeded): the wait before
it goes again, and what the log says of it.

Not on the next loop turn: a refusal that lasts would have it resent 20 times a second, for as
long as the broker's rules stay as they are. The wait grows while the refusals go on, and starts
afresh once the broker takes one. Batches and events each have their own: a broker may refuse one
topic and take the other.

Said once per episode, batches as events: the first refusal on a topic is a warning naming what
was refused, the topic, the reason and its code; the retries are only counted (the caller's
counters count each refusal); the broker taking one on that topic again is said at INFO with how
many refusals the episode had. Before, each refused batch was a warning: a window of 8 refused for
days at the 60 s maximum wait was about 8 warnings a minute, a field log flooded.

No reminder while it lasts, unlike :mod:`gateway.episodes` and :class:`aquami.outage.Outage`: a
refusal is the broker's rule, which stays until someone changes it, and the health status counts
each one; the end is said at INFO as theirs is."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Literal

from gateway.backoff import Backoff
from gateway.publisher_state import log

_REFUSED_MIN_S = 1.0  # the first wait before a refused message goes again
Kind = Literal["batch", "event"]
_PLURAL: dict[Kind, str] = {"batch": "batches", "event": "events"}


class RefusalEpisodes:
    """The refusals of one kind said once per episode: from a topic's first refusal to the broker
    taking one on it again."""

    def __init__(self, kind: Kind) -> None:
        self._kind = kind
        self._refusals: dict[str, int] = {}  # topic -> refusals since the broker last took one on it

    def refused(self, name: object, topic: str, reason: Any, wait: float) -> None:
        """``name`` (a batch_seq, an event's number) refused on ``topic`` for ``reason`` (a paho
        ReasonCode); ``wait``: the seconds until the next try."""
        refusals = self._refusals.get(topic, 0)
        self._refusals[topic] = refusals + 1
        if not refusals:
            log.warning(
                "broker refused %s %s on %s: %s (reason code %d); %s stay in the spool and go again after a "
                "growing wait, next try in %.1f s (said again once the broker takes one)",
                self._kind, name, topic, reason, reason.value, _PLURAL[self._kind], wait,
            )  # fmt: skip

    def taken(self, name: object, topic: str) -> None:
        """The broker took ``name`` on ``topic``: the end of an episode, if one was going on there."""
        refusals = self._refusals.pop(topic, 0)
        if refusals:
            log.info("broker took %s %s on %s, after %d refusals", self._kind, name, topic, refusals)


class RefusalHold:
    """Sends of one kind held back after a refusal, and said once per episode. ``clock`` and
    ``rng`` (the waits' jitter): the real ones but in a model test."""

    def __init__(
        self,
        kind: Kind,
        maximum_s: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._backoff = Backoff(min(_REFUSED_MIN_S, maximum_s), maximum_s, rng)
        self._clock = clock
        self._until = 0.0
        self._episodes = RefusalEpisodes(kind)

    def refused(self, name: object, topic: str, reason: Any) -> float:
        """A refusal came back: the seconds until the next try. The others of a window, refused
        with it, wait as long (the wait grows once per window, not once per message)."""
        now = self._clock()
        if now >= self._until:
            self._until = now + self._backoff.next()
        wait = self._until - now
        self._episodes.refused(name, topic, reason, wait)
        return wait

    def accepted(self, name: object, topic: str) -> None:
        """The broker took one: the next refusal waits the shortest again."""
        self._backoff.reset()
        self._episodes.taken(name, topic)

    def holding(self) -> bool:
        """Within the wait after a refusal: nothing of this kind goes."""
        return self._clock() < self._until
