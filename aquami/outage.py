"""A service's outage as a log tells it: when it starts, now and then while it lasts, and its end.

A retry loop that logs every failure floods the log (the collector's writer: 121 two-line warnings
in a 2-minute database outage) or, logging none, says nothing at all (the broker away for minutes:
not a line). :class:`Outage` logs the first failure with its reason, a reminder every
``remind_every_s`` with how long and how many failures, and one line when the service is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Seconds between reminders that a service is still unavailable.
REMIND_EVERY_S = 300.0


def one_line(text: object) -> str:
    """``text`` with its whitespace runs, newlines included, as one space (psycopg's messages carry
    a newline and a tab: a log line each became two)."""
    return " ".join(str(text).split())


class Outage:
    """``what`` ("database", "MQTT broker mqtt://host:1883") is unavailable from the first
    :meth:`failed` until :meth:`recovered`; safe to call from any thread."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        remind_every_s: float = REMIND_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._log = log
        self.what = what
        self._remind_every_s = remind_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None  # the clock's time of the first failure; None while available
        self.failures = 0
        self._reminded = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, reason: object, waiting: str = "") -> None:
        """One more failure (``reason``, said on one line); ``waiting`` is added to what is logged
        ("; 3 messages wait, unacknowledged")."""
        with self._lock:
            now = self._clock()
            self.failures += 1
            if self.since is None:
                self.since = self._reminded = now
                self._log.warning("%s unavailable (%s)%s", self.what, one_line(reason), waiting)
            elif now - self._reminded >= self._remind_every_s:
                self._reminded = now
                self._log.warning(
                    "%s still unavailable after %.0f s, %d failures (%s)%s",
                    self.what,
                    now - self.since,
                    self.failures,
                    one_line(reason),
                    waiting,
                )

    def recovered(self) -> None:
        """The service answers again: said once, if it had failed."""
        with self._lock:
            if self.since is None:
                return
            self._log.warning(
                "%s available again after %.0f s, %d failures", self.what, self._clock() - self.since, self.failures
            )
            self.since, self.failures = None, 0
