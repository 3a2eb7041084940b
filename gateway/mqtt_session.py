"""One MQTT session: CONNECT and its CONNACK (or none in time), the MQTT version asked in once more
beside a held 3.1.1 session (:mod:`gateway.mqtt_recheck`), the session started ("online", the
command subscription), the loop that publishes on it, commands received, the goodbye, and its
connection closed without a word to the publisher where one of two is given up."""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from aquami.guarded import CallbackGuard
from aquami.paho_log import lost_because
from gateway.broker_link import BrokerLink
from gateway.inflight import InFlight
from gateway.mqtt_client import ClientFactory
from gateway.mqtt_recheck import ask_beside
from gateway.mqtt_version import VersionChoice
from gateway.publisher_spool import PublisherSpool
from gateway.publisher_state import CommandHandler, PublisherState, log
from gateway.size_limit import PACKET_TOO_LARGE

#: DISCONNECT reason 0x8E: another client connected with this client id (MQTT 5 only; Mosquitto sends
#: it from 2.0.15 on, EMQX and HiveMQ too; Mosquitto 2.0.11 and any MQTT 3.1.1 broker just close)
_SESSION_TAKEN_OVER = 142
_LOOP_TICK_S = 0.05  # how long one network-loop turn may wait for the socket
_SPOOLING = "; readings wait in the spool"  # what a broker outage means here, said with it


class Session:
    """One session, from its CONNECT to its end: a new one for each connection, on the client it is
    given. How it went (:attr:`connack`, :attr:`connack_timed_out`, :attr:`taken_over`,
    :attr:`too_large`, :attr:`connected_at`) is read by the connection thread after it, which closes :attr:`client`."""

    def __init__(
        self,
        client: mqtt.Client,
        *,
        state: PublisherState,
        inflight: InFlight,
        clients: ClientFactory,
        version: VersionChoice,
        link: BrokerLink,
        guard: CallbackGuard,
        on_command: CommandHandler | None,
        spool: PublisherSpool,
    ) -> None:
        self._state = state
        self._spool = spool
        self._inflight = inflight
        self._clients = clients
        self._version = version
        self._link = link
        self._guard = guard
        self._on_command = on_command
        #: the session's client: the one given or, after a recheck, the one kept
        self.client = self._wire(client)
        self.connack: Any = None  # the CONNACK's reason, None until it arrives
        self.connack_timed_out = False  # the CONNECT got no answer in time
        self.taken_over = False  # the session's end: the broker's DISCONNECT 0x8E
        self.too_large = False  # the session's end: the broker's DISCONNECT 0x95, a packet too large
        self.connected_at: float | None = None  # the CONNACK taken (time.monotonic)
        self._connect_started = 0.0  # when the CONNECT went out (time.monotonic)
        self._hold = False  # the CONNACK was taken, to ask in MQTT 5 beside it: send nothing yet

    def _wire(self, client: mqtt.Client) -> mqtt.Client:
        """``client`` with this session's callbacks. An exception that leaves a callback ends the
        session, and the next one meets the same bug: reconnecting for ever, nothing delivered. Each
        is caught, logged, and stops the publisher (:class:`gateway.publisher_failure.Failure`)."""
        guarded = self._guard
        client.on_connect = guarded(self.on_connect)
        client.on_disconnect = guarded(self.on_disconnect)
        client.on_publish = guarded(self._inflight.on_publish)
        client.on_message = guarded(self.on_message)
        return client

    def run(self) -> None:
        """CONNECT, wait for the CONNACK, then publish on each loop turn until the connection or the
        publisher stops."""
        state, client = self._state, self.client
        self._connect_started = time.monotonic()
        try:
            client.connect(state.endpoint.host, state.endpoint.port, keepalive=state.options.keepalive_s)
        except (OSError, ssl.SSLError) as error:
            self._link.outage.failed(f"cannot connect: {error}", _SPOOLING)
            return
        patience = self._version.patience(float(state.options.keepalive_s), state.options.connack_wait_s)
        while True:
            rc = client.loop(timeout=_LOOP_TICK_S)
            self._with_spool(self._inflight.settle_acks)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # never looped again: paho (2.2) says "Client is not connected. …" at ERROR for a client
                # whose connection ended; a keepalive close returns MQTT_ERR_CONN_LOST here, its drop
                # said by on_disconnect (tests/gateway/test_keepalive_close_log.py)
                return
            if self.connack is None:
                if state.stop.is_set():  # stopped, or failed (see Failure.fail), before the CONNACK
                    return
                if time.monotonic() - self._connect_started > patience:
                    self._link.outage.failed(f"no CONNACK within {patience:g} s", _SPOOLING)
                    self.connack_timed_out = True
                    return
                continue
            if self.connack.is_failure:
                return
            if self._hold:
                self._hold = False
                kept = self._ask_in_mqtt5_beside(client)
                if kept is None:
                    return
                client = kept
                continue
            if state.stop.is_set():
                self._say_goodbye(client)
                return
            # statuses and replies need no spool: before, a spool failing to delete what the broker had
            # acknowledged kept them from going, for as long as it failed
            self._inflight.send_outbox(client)
            if self._with_spool(functools.partial(self._inflight.send, client)):
                self._spool.worked()

    def _with_spool(self, work: Callable[[], None]) -> bool:
        """``work`` (the turn's spool work), unless the spool failed within its retry wait: whether it
        ran and the spool answered. A spool's error is the spool's (gateway.publisher_spool), said as
        such: the session, whose broker is fine, goes on. Before, it ended the session, and the
        gateway reconnected to the broker for as long as the disk failed."""
        return self._spool.attempt(work)

    def _say_goodbye(self, client: mqtt.Client) -> None:
        info = client.publish(self._state.status_topic, b"offline", qos=1, retain=True)
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=_LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        client.disconnect()  # written at once: paho sends from this thread when there is no loop thread

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = reason
        if reason.is_failure:
            self._link.outage.failed(f"refused the connection: {reason}", _SPOOLING)
            return
        if not self._version.answered(time.monotonic() - self._connect_started):
            self._hold = True
            return
        self._start_using(client, properties)

    def _ask_in_mqtt5_beside(self, held: mqtt.Client) -> mqtt.Client | None:
        """The 3.1.1 session was answered at once after an unanswered MQTT 5 CONNECT: hold it and ask in
        MQTT 5 beside it (:mod:`gateway.mqtt_recheck`). The client to go on with, its session started;
        None: neither (the other is closed here, the held one by
        :meth:`gateway.connection_thread.ConnectionThread.run`)."""
        state = self._state
        asking = self._wire(self._clients.new_client("5"))
        keepalive = state.options.keepalive_s
        patience = self._version.patience(float(keepalive), state.options.connack_wait_s)
        try:
            address = (state.endpoint.host, state.endpoint.port, keepalive)
            recheck = ask_beside(held, asking, address, patience, state.command_topic, state.stop)
            # a connection dropped meanwhile is no silence: "hung up on", and said as the outage's below
            told = (recheck.connack, recheck.timed_out and recheck.lost is None, recheck.held_answered)
            kept = None if state.stop.is_set() else self._version.rechecked(*told)
        except BaseException:
            close_client(asking)
            raise
        if kept == "5":
            close_client(held)
            self.client, self.connack = asking, recheck.reason
            client, properties = asking, recheck.properties
        else:
            close_client(asking)
            if kept is None:
                if recheck.lost is not None and not state.stop.is_set():  # as on_disconnect says a drop
                    self._link.outage.failed(f"connection lost: {recheck.lost}", _SPOOLING)
                return None
            client, properties = held, None
        client.on_disconnect = self._guard(self.on_disconnect)
        self._start_using(client, properties)
        return client

    def _start_using(self, client: mqtt.Client, properties: Any) -> None:
        """The broker accepted this session (``properties``: its CONNACK's), and it is the one to use."""
        state = self._state
        self._link.accepted(self._version.version)
        self._inflight.start_session(properties)
        self.connected_at = time.monotonic()
        client.publish(state.status_topic, b"online", qos=1, retain=True)
        client.subscribe(state.command_topic, qos=1)
        state.connected.set()
        self._link.say_once_what_mqtt311_loses()

    def on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._state.connected.clear()
        from_server = flags.is_disconnect_packet_from_server
        self.taken_over = from_server and reason == _SESSION_TAKEN_OVER
        self.too_large = from_server and reason == PACKET_TOO_LARGE
        if not self._state.stop.is_set():
            self._link.outage.failed(f"connection lost: {lost_because(reason, client)}", _SPOOLING)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        name = message.topic.rsplit("/", 1)[-1]
        if self._on_command is not None and not message.topic.endswith("/reply"):
            try:
                self._on_command(name, bytes(message.payload))
            except Exception:
                log.exception("command %s failed", name)


def close_client(client: mqtt.Client) -> None:
    """End a session's connection without a word to the publisher (its disconnect callback unset):
    a DISCONNECT if the broker accepted it, else just the socket closed."""
    client.on_disconnect = None
    if client.is_connected():
        client.disconnect()  # written at once: paho sends from this thread when there is no loop thread
    else:
        sock = client.socket()  # a connection that never got its CONNACK: just close it
        if sock is not None:
            sock.close()
