"""The spool's room looked at again under ``stop_polling`` failing, said once an episode.

While the spool is short of room, each poll falling due has the gateway look at the room again, in a
thread (:meth:`gateway.service.Gateway._look_at_room`). A look that fails (a disk I/O error from the
filesystem's statistics, a SQLite error reading the database's pages) fails again at each poll
falling due for as long as it lasts: a warning each time, 36 a minute for 3 meters polled every 5 s.
Now its first failure is said with the reason and what happens meanwhile, a reminder every
:data:`gateway.episodes.REMIND_EVERY_S` (how many looks failed since when, the last reason), and its
end once a look works again (:mod:`gateway.episodes`), at INFO: nothing is then wrong with the look,
and whether the spool has room again is said by its own ``spool_resumed`` event.
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

#: the one episode there is: the spool's room not looked at
_LOOK: Literal["room"] = "room"


class RoomLooks:
    """The episodes of the looks at the room of the spool at ``path`` failing, said in ``log`` (the
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
        self._episodes: Episodes[Literal["room"]] = Episodes(remind_every_s, monotonic)

    def failed(self, error: BaseException) -> None:
        """A look failed for ``error``: said if it begins an episode, or a reminder is due. An error
        neither the disk's nor the spool's (a bug) is shown with its traceback."""
        episode = self._episodes.failed(_LOOK)
        if episode is None:
            return
        traceback = None if isinstance(error, (*SPOOL_ERRORS, OSError)) else error
        if episode.first:
            self.log.warning(
                "spool %s: its room not looked at (%s); polls wait for a look that finds room (said again "
                "every %s while it lasts, and once a look works again)",
                self.path, error, lasted(self._episodes.remind_every_s), exc_info=traceback,
            )  # fmt: skip
        else:
            self.log.warning(
                "spool %s: its room still not looked at, %s looks failed since %s, the last: %s",
                self.path, f"{episode.failures:,}", utc_iso(episode.since), error, exc_info=traceback,
            )  # fmt: skip

    def worked(self) -> None:
        """A look worked: an episode going on ends, said."""
        ended = self._episodes.ended(_LOOK)
        if ended is not None:
            episode, seconds = ended
            self.log.info(
                "spool %s: its room looked at again after %s, %s looks failed",
                self.path, lasted(seconds), f"{episode.failures:,}",
            )  # fmt: skip
