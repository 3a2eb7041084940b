"""Take a collector out of a shared group for good, its backlog stored (``aquami collector leave-group``).

Mosquitto hands a group's messages round robin to its members' sessions, connected or not: a
collector gone for good left every second message (of two members) in its persistent session
until that session was ended, which dropped them. Here the collector's session is taken over
under its client id (MQTT 3.1.1, ``clean_session`` false, as the collector connects), its shared
subscriptions are ended (UNSUBSCRIBE: the broker then routes the group's new messages to the
members left, and still delivers what it had queued for this session), every queued message is
stored the collector's own way (:class:`collector.service.Collector`: idempotent, dead letters as
usual, acknowledged after commit) until none came for a quiet spell, and the session is then ended
for good: MQTT 3.1.1 has no session expiry, so a CONNECT with ``clean_session`` true under the same
id discards it, and the DISCONNECT discards the one that connection had.

A collector running under the id would be knocked off by the take-over and, reconnecting a second
later, would knock this one off: that is how a running one is told, and then nothing is ended. The
subscriptions are left alone until the connection has lasted ``watch_s``, longer than the
collector's first reconnect delay (1 s), so a running collector's subscriptions are never removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from aquami.guarded import CallbackGuard
from aquami.mqtt import new_client
from collector.service import Collector, CollectorConfig

log = logging.getLogger(__name__)

#: How long the connection must last before the subscriptions are ended: longer than a running
#: collector's first reconnect delay (1 s, aquami.mqtt.new_client), which would knock it off.
WATCH_DEFAULT_S = 5.0
#: No message for this long, none unstored: the session's queue is taken as empty.
QUIET_DEFAULT_S = 3.0
#: How long to wait for the broker's CONNACK (and UNSUBACK) before giving up.
ANSWER_S = 30.0


class LeaveGroupFailed(Exception):
    """Why the session was not ended (said to the operator; the session is left as it was, less
    what was stored and acknowledged)."""


@dataclass(frozen=True, slots=True)
class LeaveResult:
    client_id: str
    shared_group: str
    session_found: bool  # the broker had a session for the id (CONNACK's session present)
    messages: int  # taken from the session and stored (dead letters included)
    readings_stored: int  # new readings among them (a repeat is not counted)
    dead_letters: int
    session_ended: bool


class _Leaver(Collector):
    """A collector that takes over a session, ends its subscriptions and stores what it queued."""

    def __init__(self, config: CollectorConfig) -> None:
        super().__init__(config)
        self.connected = threading.Event()
        self.unsubscribed = threading.Event()
        self.session_present = False
        self.arrived = 0
        self.last_arrival = time.monotonic()
        self._arrival_lock = threading.Lock()
        self._client.on_unsubscribe = CallbackGuard("leave-group", self._fail, log)(self._on_unsubscribe)

    def _fail(self, reason: str) -> None:
        """Kept, not logged: :func:`leave_group` raises it as :class:`LeaveGroupFailed`, which its
        caller says (the command's ``error: …`` line). The collector's "…: the collector stops" line
        said it once more before, and named a collector that is not running."""
        if self.failure is None:
            self.failure = reason

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._fail(f"the broker refused the connection as {self.config.client_id!r}: {reason}")
            client.loop_stop()  # no retry
            return
        self._connection += 1
        self._connected = True
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected = False
        if self._stop.is_set():
            return
        # Not reconnected: the other connection under this id is a running collector's, and each
        # reconnection would knock it off again.
        client.loop_stop()
        self._fail(
            f"the broker ended the connection as {self.config.client_id!r} ({reason}): another client "
            "connected under that id, a collector running under it? Stop it (for good) and run leave-group "
            "again; its session and subscriptions are left as they were"
        )

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self.unsubscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._arrival_lock:
            self.arrived += 1
            self.last_arrival = time.monotonic()
        super()._on_message(client, userdata, message)

    def stored_all(self) -> bool:
        """Every message that came is stored (or a dead letter): nothing waits in the writer."""
        return self.counters.snapshot()["messages"] >= self.arrived

    def quiet_for(self) -> float:
        with self._arrival_lock:
            return time.monotonic() - self.last_arrival


def leave_group(
    config: CollectorConfig,
    *,
    watch_s: float = WATCH_DEFAULT_S,
    quiet_s: float = QUIET_DEFAULT_S,
    stop: threading.Event | None = None,
) -> LeaveResult:
    """Store what ``config.client_id``'s session holds, then end the session; :class:`LeaveGroupFailed`
    when it could not (a collector running under the id, the broker refusing, ``stop`` set)."""
    if not config.shared_group:
        raise ValueError("leave_group needs the shared group the collector was in")
    stop = stop or threading.Event()
    leaver = _Leaver(config)
    leaver.start()
    try:
        _wait(leaver, leaver.connected.is_set, ANSWER_S, stop, "the broker's answer to the connection")
        _wait(leaver, lambda: False, watch_s, stop)  # a running collector's reconnection knocks it off
        leaver._client.unsubscribe(list(config.subscriptions))
        _wait(leaver, leaver.unsubscribed.is_set, ANSWER_S, stop, "the broker's answer to the UNSUBSCRIBE")
        since = time.monotonic()
        _wait(
            leaver,
            lambda: leaver.stored_all() and min(leaver.quiet_for(), time.monotonic() - since) >= quiet_s,
            None,
            stop,
        )
    except LeaveGroupFailed as failed:
        leaver.stop()
        raise LeaveGroupFailed(f"{failed}; {leaver.counters.snapshot()['messages']} messages stored") from None
    leaver.stop()
    counters = leaver.counters.snapshot()
    if leaver.arrived > counters["messages"]:  # came while stopping: unacknowledged, still in the session
        raise LeaveGroupFailed(
            f"{leaver.arrived - counters['messages']} messages came as it stopped and wait in the session "
            f"({counters['messages']} stored): run leave-group again; the session is not ended"
        )
    _end_session(config)
    return LeaveResult(
        client_id=config.client_id,
        shared_group=config.shared_group,
        session_found=leaver.session_present,
        messages=counters["messages"],
        readings_stored=counters["readings_stored"],
        dead_letters=counters["dead_letters"],
        session_ended=True,
    )


def _wait(
    leaver: _Leaver,
    done: Callable[[], bool],
    timeout: float | None = None,
    stop: threading.Event | None = None,
    awaited: str = "",
) -> None:
    """Until ``done``, or ``timeout`` passed (an error if ``awaited`` names what was awaited);
    :class:`LeaveGroupFailed` at once if the leaver failed or ``stop`` is set."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        if leaver.failure is not None:
            raise LeaveGroupFailed(leaver.failure)
        if stop is not None and stop.is_set():
            raise LeaveGroupFailed("stopped before the session was emptied: it is not ended")
        if deadline is not None and time.monotonic() >= deadline:
            if awaited:
                raise LeaveGroupFailed(f"no answer from the broker after {timeout:g} s ({awaited})")
            return
        time.sleep(0.05)
    if leaver.failure is not None:
        raise LeaveGroupFailed(leaver.failure)


def _end_session(config: CollectorConfig) -> None:
    """End the id's session for good: CONNECT with clean session (MQTT 3.1.1, 3.1.2.4: the broker
    discards the previous session), then DISCONNECT (the new one goes with the connection)."""
    client = new_client(config.mqtt, client_id=config.client_id, clean_session=True)
    answered = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(config.mqtt.host, config.mqtt.port, keepalive=30)
    except OSError as error:
        raise LeaveGroupFailed(f"could not connect again to end the session: {error}") from None
    client.loop_start()
    try:
        if not answered.wait(ANSWER_S) or refused:
            said = refused[0] if refused else f"no answer in {ANSWER_S:g} s"
            raise LeaveGroupFailed(f"the session's messages are stored, but it could not be ended: {said}")
    finally:
        client.disconnect()
        client.loop_stop()
