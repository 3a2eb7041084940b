"""One MQTT session: CONNECT and its CONNACK (or none in time), the MQTT version asked in once more
beside a held 3.1.1 session (:mod:`gateway.mqtt_recheck`), the session started ("online", the
command subscription), the loop that publishes on it, commands received, the goodbye, and its
connection closed without a word to the publisher where one of two is given up."""

from __future__ import annotations

import logging
import ssl
import time
from abc import abstractmethod
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from gateway.inflight import InFlight
from gateway.mqtt_recheck import ask_beside
from gateway.mqtt_version import Version

log = logging.getLogger("gateway.publisher")  # one logger for all the publisher's modules, as operators know it

#: DISCONNECT reason 0x8E: another client connected with this client id (MQTT 5 only; Mosquitto sends
#: it from 2.0.15 on, EMQX and HiveMQ too; Mosquitto 2.0.11 and any MQTT 3.1.1 broker just close)
_SESSION_TAKEN_OVER = 142
_LOOP_TICK_S = 0.05  # how long one network-loop turn may wait for the socket
_SPOOLING = "; readings wait in the spool"  # what a broker outage means here, said with it


class Session(InFlight):
    """A session on a connected client, from its CONNECT to its end."""

    @abstractmethod
    def _new_client(self, version: Version | None = None) -> mqtt.Client:
        """A fresh client (:class:`gateway.mqtt_client.ClientFactory`)."""

    def _session(self, client: mqtt.Client) -> None:
        self._connack = None
        self._session_taken_over = False
        self._connack_timed_out = False
        self._hold = False
        self._connect_started = time.monotonic()
        try:
            client.connect(self.endpoint.host, self.endpoint.port, keepalive=self.options.keepalive_s)
        except (OSError, ssl.SSLError) as error:
            self.broker.failed(f"cannot connect: {error}", _SPOOLING)
            return
        patience = self._version.patience(float(self.options.keepalive_s), self.options.connack_wait_s)
        while True:
            rc = client.loop(timeout=_LOOP_TICK_S)
            self._settle_acks()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if self._connack is None:
                if self._stop.is_set():  # stopped, or failed (see _fail), before the CONNACK
                    return
                if time.monotonic() - self._connect_started > patience:
                    self.broker.failed(f"no CONNACK within {patience:g} s", _SPOOLING)
                    self._connack_timed_out = True
                    return
                continue
            if self._connack.is_failure:
                return
            if self._hold:
                self._hold = False
                kept = self._ask_in_mqtt5_beside(client)
                if kept is None:
                    return
                client = kept
                continue
            if self._stop.is_set():
                self._say_goodbye(client)
                return
            self._drain_outbox(client)
            self._send_durable_messages(client)
            self._send_what_fits(client)

    def _say_goodbye(self, client: mqtt.Client) -> None:
        info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=_LOOP_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        client.disconnect()  # written at once: paho sends from this thread when there is no loop thread

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connack = reason
        if reason.is_failure:
            self.broker.failed(f"refused the connection: {reason}", _SPOOLING)
            return
        if not self._version.answered(time.monotonic() - self._connect_started):
            self._hold = True
            return
        self._start_using(client, properties)

    def _ask_in_mqtt5_beside(self, held: mqtt.Client) -> mqtt.Client | None:
        """The 3.1.1 session was answered at once after an unanswered MQTT 5 CONNECT: hold it and ask in
        MQTT 5 beside it (:mod:`gateway.mqtt_recheck`). The client to go on with, its session started;
        None: neither (the other is closed here, the held one by
        :meth:`gateway.connection_thread.ConnectionThread._run`)."""
        asking = self._new_client("5")
        keepalive = self.options.keepalive_s
        patience = self._version.patience(float(keepalive), self.options.connack_wait_s)
        try:
            address = (self.endpoint.host, self.endpoint.port, keepalive)
            recheck = ask_beside(held, asking, address, patience, self.command_topic, self._stop)
            told = (recheck.connack, recheck.timed_out, recheck.held_answered)
            kept = None if self._stop.is_set() else self._version.rechecked(*told)
        except BaseException:
            close_client(asking)
            raise
        if kept == "5":
            close_client(held)
            self._client, self._connack = asking, recheck.reason
            client, properties = asking, recheck.properties
        else:
            close_client(asking)
            if kept is None:
                return None
            client, properties = held, None
        client.on_disconnect = self._guard(self._on_disconnect)
        self._start_using(client, properties)
        return client

    def _start_using(self, client: mqtt.Client, properties: Any) -> None:
        """The broker accepted this session (``properties``: its CONNACK's), and it is the one to use."""
        self.connections += 1
        self.broker.recovered()
        self.protocol_in_use = self._version.version
        announced = getattr(properties, "MaximumPacketSize", None)
        self._max_packet = min((n for n in (announced, self.options.max_packet_size) if n), default=None)
        self._readings_per_batch = self.batch_size
        self._unsendable.clear()  # this broker may take them
        self._connected_at = time.monotonic()
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        client.subscribe(self.command_topic, qos=1)
        self.connected.set()
        log.info("connected to %s (MQTT %s)", self.endpoint.url, self.protocol_in_use)
        if self.protocol_in_use == "3.1.1" and self.options.broker_acl and not self._said_mqtt311_loses_refusals:
            self._said_mqtt311_loses_refusals = True
            self._say_mqtt311_loses_refusals()

    def _say_mqtt311_loses_refusals(self) -> None:
        """MQTT 3.1.1 has no way to refuse a publish: Mosquitto acknowledges (PUBACK) a QoS 1 message
        its ACL dropped, and the spool deletes the batch as delivered. MQTT 5 says reason 135 (not
        authorised), and the batch stays. Said once per run, at the first MQTT 3.1.1 connection."""
        why = "configured" if self.options.protocol == "3.1.1" else "the broker did not take MQTT 5"
        log.warning(
            "MQTT 3.1.1 with %s (%s): a publish the broker's ACL refuses is acknowledged all the same, so the "
            "gateway deletes what the broker dropped, and it is lost; make sure this gateway may publish to "
            '%s/%s/#, or use MQTT 5 (protocol = "auto" or "5")',
            self.endpoint.url,
            why,
            self.topic_root,
            self.gateway_id,
        )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        self._session_taken_over = flags.is_disconnect_packet_from_server and reason == _SESSION_TAKEN_OVER
        if not self._stop.is_set():
            self.broker.failed(f"connection lost: {reason}", _SPOOLING)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        name = message.topic.rsplit("/", 1)[-1]
        if self.on_command is not None and not message.topic.endswith("/reply"):
            try:
                self.on_command(name, bytes(message.payload))
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
