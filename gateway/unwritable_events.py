"""Events the gateway cannot write as JSON (a bug where the event was made), said once an episode for
each kind of event (``meter_offline``, ``spool_overflow``…), apart from the spool's own failures.

Such an event is lost: it is in the log's ``event …`` line alone (:mod:`gateway.event_json`), and
counted in ``events_not_spooled``. Before, it was said as one of the spool's failures to store events
(:mod:`gateway.spool_writes`), in the same episode as a disk refusing them: a disk failure going on
hid a bad event (at most a reminder an hour on, with the disk's words), and a bad event's episode hid
the disk failure that came after it; and its line carried a traceback, which said nothing the line
did not. Now the first bad event of a kind is one line naming the event, its field and why, with no
traceback; a reminder every :data:`gateway.episodes.REMIND_EVERY_S` while more fail; and its end once
events of that kind have been written for as long (``settle_s``: a kind that fails for some meters and
not for others is one episode, not a line at each of its events).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aquami.contracts.reads import utc_iso
from aquami.durations import lasted
from gateway.episodes import REMIND_EVERY_S, Episodes
from gateway.event_json import EventNotJson

#: What becomes of an event the gateway cannot write (said with its kind's first failure).
MEANWHILE = (
    "such an event is in this log alone (its `event …` line), not sent to the broker, and counted in "
    "events_not_spooled; polling goes on"
)


class UnwritableEvents:
    """The episodes of events of each kind the gateway cannot write as JSON, said in ``log`` (the
    gateway's). Used on the gateway's event loop only."""

    def __init__(
        self,
        log: logging.Logger,
        remind_every_s: float = REMIND_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self._episodes: Episodes[str] = Episodes(remind_every_s, monotonic, settle_s=remind_every_s)

    def failed(self, error: EventNotJson) -> None:
        """An event of ``error.kind`` was not written: said if it begins its kind's episode, or a reminder is due."""
        episode = self._episodes.failed(error.kind)
        if episode is None:
            return
        if episode.first:
            self.log.error(
                "event %s cannot be written as JSON: %s; %s (said again every %s while %s events fail so, and once "
                "they are written again)",
                error.kind, error.why, MEANWHILE, lasted(self._episodes.remind_every_s), error.kind,
            )  # fmt: skip
        else:
            self.log.error(
                "%s events still cannot be written as JSON, %s failed since %s, the last: %s",
                error.kind, f"{episode.failures:,}", utc_iso(episode.since), error.why,
            )  # fmt: skip

    def written(self, kind: str) -> None:
        """An event of ``kind`` was written: its kind's episode ends, said, once they have been written
        for ``remind_every_s`` with none failing."""
        ended = self._episodes.ended(kind)
        if ended is not None:
            episode, seconds = ended
            self.log.info(
                "%s events written as JSON again after %s, %s could not be",
                kind, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip
