"""paho's callbacks, guarded: an exception that leaves one must not go unsaid or half-handled.

With paho's own network thread (``loop_start``) such an exception ends that thread: nothing more is
received or sent while the process runs on (the collector: 0 of 50 readings stored, exit 0). Where
the loop is driven by hand (``client.loop``, the gateway's publisher) it ends the session, and the
next session meets the same bug (the gateway: 22 connections in 3 s, nothing delivered, a
traceback each). :func:`guarded` logs the traceback once and tells ``fail`` why, for the process to
stop and exit 1: its supervisor restarts it, and nothing is lost (the broker keeps the collector's
unacknowledged messages, the spool the gateway's readings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


def guarded(
    callback: Callable[..., None], owner: str, fail: Callable[[str], None], log: logging.Logger
) -> Callable[..., None]:
    """``callback`` that, should it raise, logs the traceback and calls ``fail`` with the reason
    ("the collector's MQTT on_connect failed (its traceback is logged above)")."""
    name = callback.__name__.lstrip("_")

    def guarded_callback(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("the %s's MQTT %s failed", owner, name)
            fail(f"the {owner}'s MQTT {name} failed (its traceback is logged above)")

    return guarded_callback
