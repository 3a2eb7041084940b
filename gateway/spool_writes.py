"""The gateway's own writes to the spool failing (the meters' health at each status, events, the polls'
readings), said once an episode for each, as the publisher says its own (gateway.publisher_spool).

A disk that refuses writes (full, worn, its filesystem turned read-only) fails every write for as long
as it lasts: the meters' health was a traceback at every status interval, and each event not spooled
an ERROR line of its own, for hours on end. Now each kind of write says its first failure with the
reason and what happens meanwhile, a reminder every :data:`gateway.episodes.REMIND_EVERY_S` (how many
tries failed since when, the last reason), and its end once it is stored again (:mod:`gateway.episodes`).
An error that is not the spool's (a bug) keeps its traceback, once an episode too.

A spool refusing readings for want of room (:class:`gateway.spool.SpoolFull`: less left than its
reserve for delivery) is an episode of its own, said in its own words: its first refusal, a reminder
every hour, and an INFO line once it takes readings again. Before, it kept its own flag: said once
however long it lasted (an operator reading the last hour's log saw nothing of a spool full since the
day before), and its end was a WARNING, though nothing was then wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from aquami.contracts.reads import utc_iso
from aquami.durations import lasted
from gateway.episodes import REMIND_EVERY_S, Episodes
from gateway.publisher_spool import SPOOL_ERRORS
from gateway.spool import SpoolFull

#: What the gateway writes to the spool itself (the publisher's work is said by gateway.publisher_spool).
Written = Literal["readings", "events", "meters' health"]

#: The episode of the spool refusing readings for want of room, apart from its failures to write them.
_FULL: Literal["full"] = "full"


class SpoolWrites:
    """The episodes of the gateway's writes to the spool at ``path`` failing, said in ``log`` (the
    gateway's). Used on the gateway's event loop only."""

    def __init__(
        self,
        path: Path,
        log: logging.Logger,
        remind_every_s: float = REMIND_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.log = log
        self._episodes: Episodes[Written | Literal["full"]] = Episodes(remind_every_s, monotonic)

    def failed(self, written: Written, error: BaseException, meanwhile: str) -> None:
        """``written`` was not stored for ``error``: said if it begins an episode (with ``meanwhile``:
        what becomes of what is not stored), or a reminder is due."""
        episode = self._episodes.failed(written)
        if episode is None:
            return
        traceback = None if isinstance(error, SPOOL_ERRORS) else error  # not the spool's: a bug, shown whole
        if episode.first:
            self.log.error(
                "%s not stored in the spool %s: %s; %s (said again every %s while it lasts, and once stored again)",
                written, self.path, error, meanwhile, lasted(self._episodes.remind_every_s), exc_info=traceback,
            )  # fmt: skip
        else:
            self.log.error(
                "%s still not stored in the spool %s, %s tries failed since %s, the last: %s",
                written, self.path, f"{episode.failures:,}", utc_iso(episode.since), error, exc_info=traceback,
            )  # fmt: skip

    def full(self, refused: SpoolFull) -> None:
        """The spool refused readings, short of room (``refused`` says how much is left and how many
        readings went): said if it begins an episode, or a reminder is due."""
        episode = self._episodes.failed(_FULL)
        if episode is None:
            return
        if episode.first:
            self.log.error(
                "%s (said again every %s while it lasts, and once it takes readings again)",
                refused, lasted(self._episodes.remind_every_s),
            )  # fmt: skip
        else:
            self.log.error(
                "spool %s still full, %s tries refused since %s, the last: %s",
                self.path, f"{episode.failures:,}", utc_iso(episode.since), refused,
            )  # fmt: skip

    def takes_readings(self, depth: int) -> None:
        """The spool took readings (it holds ``depth``): a full spool's episode going on ends, said."""
        ended = self._episodes.ended(_FULL)
        if ended is not None:
            episode, seconds = ended
            self.log.info(
                "the spool %s takes readings again after %s, %s tries refused (depth %d)",
                self.path, lasted(seconds), f"{episode.failures:,}", depth,
            )  # fmt: skip

    def worked(self, written: Written) -> None:
        """``written`` was stored: an episode going on ends, said."""
        ended = self._episodes.ended(written)
        if ended is not None:
            episode, seconds = ended
            self.log.info(
                "%s stored in the spool %s again after %s, %s tries failed",
                written, self.path, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip
