"""A service's outage as a log tells it: when it starts, now and then while it lasts, and its end.

A retry loop that logs every failure floods the log (the collector's writer: 121 two-line warnings
in a 2-minute database outage) or, logging none, says nothing at all (the broker away for minutes:
not a line). :class:`Outage` logs the first failure with its reason (WARNING), a reminder every
``remind_every_s`` with how long and how many failures (WARNING), and one line when the service is
back (INFO: an operator alerting on WARNING is not paged again because it works).

A link that comes back and drops again (a NAT or a cell modem ending connection after connection, a
broker ending each over a size limit) is one outage, not a pair of lines per drop: with
``settle_s``, the service is said back only once it has stayed back that long (by a timer, or at the
next call), the drops meanwhile counted and said in the reminders and the end (``… available again
after 95 s, 10 failures, 9 drops``). A single outage is still said at its start at once, and its end
``settle_s`` after the service came back (the time said is until it came back). ``settle_s`` 0: its
end is said as it comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Seconds between reminders that a service is still unavailable.
REMIND_EVERY_S = 300.0

#: How long a link that came back must stay up before it is said back (``Outage(settle_s=…)``):
#: longer than a flapping link stays up between drops (a NAT or a modem's minute), short beside
#: the reminders.
SETTLE_S = 90.0


def one_line(text: object) -> str:
    """``text`` with its whitespace runs, newlines included, as one space (psycopg's messages carry
    a newline and a tab: a log line each became two)."""
    return " ".join(str(text).split())


def _after_in_background(seconds: float, then: Callable[[], None]) -> Callable[[], None]:
    """Call ``then`` in ``seconds`` on a thread of its own; returns what cancels it."""
    timer = threading.Timer(seconds, then)
    timer.daemon = True
    timer.start()
    return timer.cancel


class Outage:
    """``what`` ("database", "MQTT broker mqtt://host:1883") is unavailable from the first
    :meth:`failed` until :meth:`recovered` (and ``settle_s`` without a failure since); safe to call
    from any thread. ``clock`` and ``after`` (calls a function some seconds on, returns what cancels
    it): the real ones but in a test."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        remind_every_s: float = REMIND_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = 0.0,
        after: Callable[[float, Callable[[], None]], Callable[[], None]] = _after_in_background,
    ):
        self._log = log
        self.what = what
        self._remind_every_s = remind_every_s
        self._clock = clock
        self._settle_s = settle_s
        self._after = after
        self._lock = threading.Lock()
        self.since: float | None = None  # the clock's time of the first failure; None while available
        self.failures = 0
        self.drops = 0  # times it came back and failed again within settle_s
        self._back: float | None = None  # when it last came back, while not yet said back
        self._cancel_settle: Callable[[], None] | None = None
        self._reminded = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, reason: object, waiting: str = "") -> None:
        """One more failure (``reason``, said on one line); ``waiting`` is added to what is logged
        ("; 3 messages wait, unacknowledged")."""
        with self._lock:
            now = self._clock()
            self._say_back_if_settled(now)
            self.failures += 1
            if self._back is not None:
                self.drops += 1
                self._back = None
            if self.since is None:
                self.since = self._reminded = now
                self._log.warning("%s unavailable (%s)%s", self.what, one_line(reason), waiting)
            elif now - self._reminded >= self._remind_every_s:
                self._reminded = now
                self._log.warning(
                    "%s still unavailable after %.0f s, %d failures%s (%s)%s",
                    self.what,
                    now - self.since,
                    self.failures,
                    self._drops(),
                    one_line(reason),
                    waiting,
                )

    def recovered(self) -> None:
        """The service answers again: said once, if it had failed, once it has stayed back
        ``settle_s``."""
        with self._lock:
            if self.since is None:
                return
            now = self._clock()
            if self._back is None:
                self._back = now
                if self._settle_s > 0:
                    self._cancel_settle = self._after(self._settle_s, self.settle)
            self._say_back_if_settled(now)

    def settle(self) -> None:
        """Say the service back if it has stayed back ``settle_s`` (called ``settle_s`` after it came
        back; a timer a hair early, or a clock's rounding, asks again for what is left)."""
        with self._lock:
            now = self._clock()
            self._say_back_if_settled(now)
            if self._back is not None and self.since is not None:
                self._cancel_settle = self._after(max(self._back + self._settle_s - now, 0.001), self.settle)

    def stop(self) -> None:
        """The service's user stops: nothing more is said (a link back but not yet settled is not
        said back after its owner stopped, nor into the log of whatever runs next)."""
        with self._lock:
            if self._cancel_settle is not None:
                self._cancel_settle()
                self._cancel_settle = None
            self.since, self._back = None, None

    def _say_back_if_settled(self, now: float) -> None:
        if self.since is None or self._back is None or now - self._back < self._settle_s:
            return
        self._log.info(
            "%s available again after %.0f s, %d failures%s",
            self.what,
            self._back - self.since,
            self.failures,
            self._drops(),
        )
        self.since, self._back, self.failures, self.drops = None, None, 0, 0

    def _drops(self) -> str:
        return f", {self.drops} drops" if self.drops else ""
