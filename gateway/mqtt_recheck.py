"""Asking in MQTT 5 once more beside a held MQTT 3.1.1 session (protocol "auto").

An MQTT 5 CONNECT went unanswered, and a 3.1.1 one just after was answered at once: the broker may
be one that cannot parse MQTT 5 and says nothing, or the link was silent for the first CONNECT and
came back for the second. The gateway holds the 3.1.1 session, sending nothing on it, and asks in
MQTT 5 on a second connection. If MQTT 5 is still unanswered once its wait is over, the held session
is asked something (an UNSUBSCRIBE of a topic it never subscribed to: no effect on the broker) and
its answer says the link carried answers on both sides of that wait, on a connection opened before
it: a link that went silent meanwhile, losing its connections (a half-open NAT, a proxy in front of
a dead broker), is silent on the held one too. Before, the 3.1.1 session was hung up first, and the
MQTT 5 CONNECT's silence alone was taken for the broker's: a link that went silent again within
those seconds left a broker with MQTT 5 spoken to in 3.1.1 until the gateway restarted.

Both connections use the gateway's client id: a broker that takes the MQTT 5 CONNECT ends the held
session as taken over, which is what the gateway wants then anyway.

A connection dropped meanwhile (a RST from a NAT, a modem, the broker) is said as on the normal link
(:mod:`aquami.paho_log`): paho's per-drop ERROR at DEBUG, its socket error kept as the recheck's
:attr:`Recheck.lost`, which the session gives the broker outage. Before, both clients' disconnect
callbacks were unset while the recheck ran: paho said the drop at ERROR, the outage never heard of
it, and a drop of the held session read as the link gone silent.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from aquami.paho_log import lost_because
from gateway.mqtt_version import connack_code

_TICK_S = 0.025  # how long each of the two network loops may wait for its socket, each turn
#: DISCONNECT reason 0x8D, which paho gives ``on_disconnect`` for a connection it closed itself, its
#: keepalive passed without a byte from the broker: silence, which the recheck judges by its own waits
_KEEPALIVE_TIMEOUT = 141


@dataclass
class Recheck:
    """How the MQTT 5 CONNECT asked beside the held session went."""

    reason: Any = None  # its CONNACK's reason (paho's ReasonCode); None: none came
    properties: Any = None  # its CONNACK's properties
    timed_out: bool = False  # none came within the wait
    held_answered: bool = False  # the held session answered a request sent once that wait was over
    #: why a connection (the held one or the asking one, the first to go) was lost meanwhile:
    #: ``[Errno 104] Connection reset by peer`` (:func:`aquami.paho_log.lost_because`); None: neither
    #: was, or only to paho's keepalive (a silent link: no drop)
    lost: str | None = None

    @property
    def connack(self) -> int | None:
        return connack_code(self.reason)


def ask_beside(
    held: mqtt.Client,
    asking: mqtt.Client,
    address: tuple[str, int, int],
    patience_s: float,
    probe_topic: str,
    stop: threading.Event,
) -> Recheck:
    """Connect ``asking`` (an MQTT 5 client) to ``address`` (host, port, keepalive) while looping
    ``held`` (connected, in MQTT 3.1.1); its CONNACK, or after ``patience_s`` without one, whether
    ``held`` answers an UNSUBSCRIBE of ``probe_topic`` within as long again. Both clients' callbacks
    for connect, disconnect and unsubscribe are this function's while it runs: the caller sets the
    ones it needs on the client it goes on with (a connection lost meanwhile: :attr:`Recheck.lost`)."""
    result = Recheck()
    probe: list[int] = []  # the UNSUBSCRIBE's message id, once sent
    answered: list[int] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        result.reason, result.properties = reason, properties

    def on_unsubscribe(client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
        answered.append(mid)

    down: list[mqtt.Client] = []  # the clients whose connection ended meanwhile: not looped again

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        # set, paho says its per-drop line at DEBUG (aquami.paho_log), and the drop is said here
        down.append(client)
        if result.lost is None and getattr(reason, "value", None) != _KEEPALIVE_TIMEOUT:
            result.lost = lost_because(reason, client)

    asking.on_connect, asking.on_disconnect = on_connect, on_disconnect
    held.on_disconnect, held.on_unsubscribe = on_disconnect, on_unsubscribe
    started = time.monotonic()
    host, port, keepalive = address
    try:
        asking.connect(host, port, keepalive=keepalive)
    except (OSError, ssl.SSLError):
        return result  # no answer, and no silence either: as a hang-up
    held_up = asking_up = True
    while not stop.is_set():
        # a client whose connection paho ended (its keepalive) is not looped again: paho said "Client
        # is not connected" at ERROR for it
        if held_up:
            held_up = held not in down and held.loop(timeout=_TICK_S) == MQTTErrorCode.MQTT_ERR_SUCCESS
        asking_up = asking not in down and asking.loop(timeout=_TICK_S) == MQTTErrorCode.MQTT_ERR_SUCCESS
        if result.reason is not None or not asking_up:
            return result
        waited = time.monotonic() - started
        if waited < patience_s:
            continue
        result.timed_out = True
        if not probe and held_up:
            rc, mid = held.unsubscribe(probe_topic)
            held_up = rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None
            probe.append(-1 if mid is None else mid)
        if probe and probe[0] in answered:
            result.held_answered = True
            return result
        if not held_up or waited >= 2 * patience_s:
            return result
    return result
