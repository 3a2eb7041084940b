"""The publisher stopped on its own: one of paho's callbacks failed (a bug); or its stop met a failure
(its spool failing as it drained)."""

from __future__ import annotations

import threading

from aquami.guarded import CallbackGuard
from gateway.publisher_state import FatalHandler, log


class Failure:
    """Why the publisher stopped on its own (:attr:`reason`; None while it runs), and the guard that
    wraps every session's callbacks to find out."""

    def __init__(self, stop: threading.Event, on_fatal: FatalHandler | None) -> None:
        self.reason: str | None = None
        self._stop = stop
        self._on_fatal = on_fatal
        self.guard = CallbackGuard("gateway", self.fail, log)  # one for every session's client

    def fail(self, reason: str) -> None:
        """Stop the publisher for good: its loop ends after this turn (unacknowledged batches stay
        in the spool), and ``on_fatal`` hears why."""
        if self.reason is None:
            self.reason = reason
            log.error("%s: the gateway stops", reason)
            self._stop.set()
            if self._on_fatal is not None:
                self._on_fatal(reason)

    def at_stop(self, reason: str) -> None:
        """A failure met as the publisher is told to stop (the spool failing during the drain): said in
        one line and kept as :attr:`reason` (a failure before it stays the reason), the stop going on."""
        log.error("%s", reason)
        if self.reason is None:
            self.reason = reason
