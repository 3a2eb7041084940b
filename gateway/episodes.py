"""A failure that lasts, said once per episode: its first failure, a reminder now and then, its end.

A meter that does not answer, or a wireless M-Bus receiver that will not open, fails again at every
poll or reopening for as long as it lasts: a warning each time filled a field box's log (and its SD
card, and the syslog forwarder) with the same line, 36 a minute for a dead Modbus TCP bus of 3
meters polled every 5 s. The caller says the first failure of an episode with its reason, as
before; then only a reminder every :data:`REMIND_EVERY_S` (how many failed since when, the last
reason); and the end of the episode once, with how long it lasted and how many failed. The counts
of the health status (gateway.health) are the caller's, counted at every failure as before.

:class:`aquami.outage.Outage` says one service's outage (a database, a broker) in its own fixed
words, its end at INFO as here. It stays apart for what it does that these do not: a link that comes
back and drops again is one outage, said back only once it has stayed up a while, by a timer (a
link that stays up calls nothing more). Here the episodes are many (one per meter), each caller
keeps its own words (a meter's first failure is the warning it always was), and the end is said at
a poll's answer, with no timer.

``settle_s`` (0: none) is Outage's rule for a meter that answers now and then: once it answers, it is
said back only at an answer ``settle_s`` or more after the first of that run of answers; a failure
before that goes on with the same episode (counted in :attr:`Episode.answered_between`, said with
its end), not a new one. Without it, a meter answering one poll in two (a marginal line, a weak
radio link, a meter busy half the time) was a warning and an INFO line at every failure after an
answer: an episode begun and ended each time, the flood the episodes were made to stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from aquami.clock import Clock, utc_now

#: While an episode lasts, it is said again this often (seconds): an operator reading the log of the
#: last hour sees what is still wrong.
REMIND_EVERY_S = 3600.0

Key = TypeVar("Key", bound=Hashable)


@dataclass(slots=True)
class Episode:
    """One episode so far: when it began (UTC, to say it; monotonic, to measure it) and how many
    failures it has had."""

    since: datetime
    began: float
    failures: int = 0
    said_at: float = 0.0  # when it was last said (monotonic)
    back: float | None = None  # when it answered again, while not yet settled (monotonic)
    answered_between: int = 0  # times it answered, then failed again before settling

    @property
    def lasted_s(self) -> float:
        """From its first failure until it answered again (for good), in seconds."""
        return (self.back if self.back is not None else self.began) - self.began

    @property
    def first(self) -> bool:
        """Whether this is the episode's first failure (said whole), not a reminder."""
        return self.failures == 1


class Episodes(Generic[Key]):
    """The episodes going on, one per key (a meter, a receiver). ``monotonic`` and ``clock``: the
    real ones but in a test."""

    def __init__(
        self,
        remind_every_s: float = REMIND_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Clock = utc_now,
        settle_s: float = 0.0,
    ) -> None:
        self.remind_every_s = remind_every_s
        self.monotonic = monotonic
        self.clock = clock
        self.settle_s = settle_s
        self._going_on: dict[Key, Episode] = {}

    def failed(self, key: Key) -> Episode | None:
        """One more failure of ``key``: its episode when it is to be said now (its first failure, or a
        reminder due), None when the log stays quiet."""
        now = self.monotonic()
        episode = self._going_on.get(key)
        if episode is None:
            episode = self._going_on[key] = Episode(self.clock(), now, said_at=now)
            episode.failures = 1
            return episode
        episode.failures += 1
        if episode.back is not None:  # it answered, and fails again before settling: the same episode
            episode.back = None
            episode.answered_between += 1
        if now - episode.said_at >= self.remind_every_s:
            episode.said_at = now
            return episode
        return None

    def ended(self, key: Key) -> tuple[Episode, float] | None:
        """``key`` works again: its episode and how long it lasted (seconds, until it answered again),
        if one was going on and has now settled (at once without ``settle_s``)."""
        episode = self._going_on.get(key)
        if episode is None:
            return None
        now = self.monotonic()
        if episode.back is None:
            episode.back = now
        if now - episode.back < self.settle_s:
            return None
        del self._going_on[key]
        return episode, episode.lasted_s

    def say_next_failure(self, key: Key) -> None:
        """Have ``key``'s next failure said (as a reminder), whenever the last was: what it fails on
        may have changed (its address corrected at a reload)."""
        episode = self._going_on.get(key)
        if episode is not None:
            episode.said_at = -math.inf

    def keep_only(self, keys: Iterable[Key]) -> None:
        """Forget the episodes of every key but ``keys`` (meters no longer configured): unsaid, as
        nothing more will be heard of them."""
        kept = set(keys)
        self._going_on = {key: episode for key, episode in self._going_on.items() if key in kept}
