"""The spool failing under the publisher (a disk I/O error, a spool no longer usable), told apart from
the broker's outage.

The publisher's thread reads batches and events from the spool, seals batches and deletes what the
broker acknowledged, between the turns of its network loop. An error of the spool's there ended the
MQTT session: "MQTT session failed" with its traceback, the connection closed and opened again after
the reconnection wait, and the same again for as long as the disk failed, though the broker was fine
(a reconnection loop that said the broker's outage's words and hid the spool's). Now the session goes
on (its connection kept, its keepalive answered), the spool is tried again after :data:`RETRY_S`, and
the failure is said as the spool's, once an episode (:mod:`gateway.episodes`): its first failure, a
reminder every hour, its end. What the broker acknowledged meanwhile is deleted once the spool works
again (:meth:`gateway.inflight.InFlight.settle_acks` keeps it).

Polling is the gateway's writer's, apart: a spool that still takes readings goes on taking them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from aquami.contracts.reads import utc_iso
from aquami.durations import lasted
from gateway.episodes import REMIND_EVERY_S, Episodes
from gateway.publisher_state import log
from gateway.spool import SpoolUnusable

#: How long the publisher leaves a failing spool alone before it tries it again (seconds).
RETRY_S = 1.0

#: What a spool's call raises when the spool, not the broker, fails: SQLite's errors (a damaged file
#: is mended by the spool itself: gateway.spool._mends_damage), or a spool no longer usable.
SPOOL_ERRORS = (sqlite3.Error, SpoolUnusable)


class PublisherSpool:
    """Whether the publisher may use the spool on this loop turn, and the spool's failures said once
    an episode. Used on the publisher's thread only."""

    def __init__(
        self,
        path: Path,
        retry_s: float = RETRY_S,
        remind_every_s: float = REMIND_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.retry_s = retry_s
        self.monotonic = monotonic
        self._episodes: Episodes[str] = Episodes(remind_every_s, monotonic)
        self._retry_at = float("-inf")
        self.failures = 0  # in all, since the publisher started

    def may_try(self) -> bool:
        """Whether the spool is to be used on this turn: not within ``retry_s`` of its last failure."""
        return self.monotonic() >= self._retry_at

    def attempt(self, work: Callable[[], None]) -> bool:
        """``work`` (spool work of the publisher's), unless the spool failed within ``retry_s``: whether
        it ran and the spool answered. The spool's error is said by :meth:`failed`, once an episode."""
        if not self.may_try():
            return False
        try:
            work()
        except SPOOL_ERRORS as error:
            self.failed(error)
            return False
        return True

    def failed(self, error: BaseException) -> None:
        """The spool failed a call: left alone for ``retry_s``; said if it begins an episode, or a
        reminder is due."""
        self.failures += 1
        self._retry_at = self.monotonic() + self.retry_s
        episode = self._episodes.failed("spool")
        if episode is None:
            return
        if episode.first:
            log.error(
                "spool %s fails under the publisher: %s; delivery waits (the broker's connection is kept, the "
                "spool tried again every %g s; said again every %s while it fails, and once it works)",
                self.path, error, self.retry_s, lasted(self._episodes.remind_every_s),
            )  # fmt: skip
        else:
            log.error(
                "spool %s still fails under the publisher, %s tries failed since %s, the last: %s",
                self.path, f"{episode.failures:,}", utc_iso(episode.since), error,
            )  # fmt: skip

    def failed_at_stop(self, error: BaseException) -> str:
        """The spool failed as the publisher's stop asked what it holds: the words for it, one line."""
        self.failures += 1
        return (
            f"spool {self.path} fails as the publisher stops: {error}; the drain ends here, and what the spool "
            "holds waits for the gateway's next start"
        )

    def worked(self) -> None:
        """The spool answered the publisher's calls of a turn: an episode going on ends, said."""
        ended = self._episodes.ended("spool")
        if ended is not None:
            episode, seconds = ended
            log.info(
                "spool %s works again for the publisher after %s, %s tries failed: delivery goes on",
                self.path, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip
