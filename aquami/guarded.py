"""paho's callbacks, guarded: an exception that leaves one must not go unsaid or half-handled.

With paho's own network thread (``loop_start``) such an exception ends that thread: nothing more is
received or sent while the process runs on (the collector: 0 of 50 readings stored, exit 0). Where
the loop is driven by hand (``client.loop``, the gateway's publisher) it ends the session, and the
next session meets the same bug (the gateway: 22 connections in 3 s, nothing delivered, a
traceback each). A :class:`CallbackGuard` logs the first failure's traceback and tells ``fail``
why, for the process to stop and exit 1: its supervisor restarts it, and nothing is lost (the
broker keeps the collector's unacknowledged messages, the spool the gateway's readings).

Only the first failure is told: one network turn can call a callback many times (a PUBACK for each
batch in flight), and each call meets the same bug on the way out; their tracebacks are the first
one again (they were four in a row), so later ones are logged at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


class CallbackGuard:
    """Wraps one client's callbacks (``guard(self._on_connect)``); the first exception from any of
    them is logged with its traceback and ``fail`` hears the reason ("the collector's MQTT
    on_connect failed (its traceback is logged above)")."""

    def __init__(self, owner: str, fail: Callable[[str], None], log: logging.Logger) -> None:
        self._owner = owner
        self._fail = fail
        self._log = log
        self.failed = False

    def __call__(self, callback: Callable[..., None]) -> Callable[..., None]:
        name = callback.__name__.lstrip("_")

        def guarded_callback(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                if self.failed:  # the process is stopping already, for the failure logged first
                    self._log.debug("the %s's MQTT %s failed again", self._owner, name, exc_info=True)
                    return
                self.failed = True
                self._log.exception("the %s's MQTT %s failed", self._owner, name)
                self._fail(f"the {self._owner}'s MQTT {name} failed (its traceback is logged above)")

        return guarded_callback
