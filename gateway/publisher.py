"""Delivery: publish sealed spool batches and delete each only when the broker has acknowledged it.

One thread owns the MQTT connection and drives paho's network loop itself (``client.loop``), so the
PUBACK callback, the spool work and every publish happen on that thread: no cross-thread handoff
of acknowledgements. Each connection attempt uses a fresh paho client with a clean session; after a
reconnect, every sealed and unacknowledged batch is sent again from the spool, oldest first, with its
original ``batch_seq``. Only the batches in flight when the connection broke can arrive twice, and
the collector's ``(meter_id, ts)`` key makes the repeat a no-op: delivery is at least once.

Delivery is not in order, and need not be: a batch too large for the broker is resealed under new,
higher batch_seqs (:meth:`_reseal`), after batches sealed before it that go first; a batch an MQTT 5
broker refused goes again after later ones of its window were acknowledged; a batch of one reading
too large waits while later ones go. batch_seq is monotonic in sealing, not in arrival. The
collector keys readings on ``(meter_id, ts)``, checks batch_seq for neither gaps nor order, and
judges nothing by arrival order (``tests/collector/test_ingest_replay.py``: any order, with
repeats, gives the same table; detection takes up late arrivals by ``received_at``).

Reconnection waits grow exponentially with jitter (:class:`gateway.backoff.Backoff`). With
``protocol = "auto"`` the first attempt speaks MQTT 5, and :class:`gateway.mqtt_version.VersionChoice`
decides when to fall back to MQTT 3.1.1: at once for a broker that says "unsupported protocol
version"; after silence only once a working link has shown it (a silent link is not a broker
without MQTT 5). MQTT 5 matters: only it lets a broker refuse a batch (an MQTT 3.1.1 broker
acknowledges what its ACL drops) and announce the largest packet it takes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from aquami.contracts.reads import ReadsBatch, reads_topic, status_topic
from aquami.guarded import CallbackGuard
from aquami.mqtt import MqttEndpoint
from aquami.outage import Outage
from gateway.backoff import Backoff
from gateway.config import MqttOptions
from gateway.health import SavedMeter
from gateway.mqtt_recheck import ask_beside
from gateway.mqtt_version import Version, VersionChoice
from gateway.spool import SealedBatch, Spool

log = logging.getLogger(__name__)

_CLIENT_ID_NOT_VALID = 133  # CONNACK reason 0x85; paho maps a 3.1.1 broker's return code 2 to it
#: DISCONNECT reason 0x8E: another client connected with this client id (MQTT 5 only; Mosquitto sends
#: it from 2.0.15 on, EMQX and HiveMQ too; Mosquitto 2.0.11 and any MQTT 3.1.1 broker just close)
_SESSION_TAKEN_OVER = 142
_LOOP_TICK_S = 0.05  # how long one network-loop turn may wait for the socket
_REFUSED_MIN_S = 1.0  # the first wait before a refused batch goes again
#: A connection that lasted this long was a good one: the reconnection waits start again from the
#: shortest. One dropped sooner (a broker that crash-loops, or another client taking over the same
#: client id, i.e. gateway_id) leaves them growing: they were reset at every CONNACK, and the gateway
#: reconnected every second for as long as that went on.
_STABLE_S = 30.0
_SPOOLING = "; readings wait in the spool"  # what a broker outage means here, said with it


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message other than a batch (status, event, command reply): QoS 1, not spooled."""

    topic: str
    payload: bytes
    retain: bool = False
    #: what to send instead when ``payload`` is larger than the broker takes (a status without its
    #: details); without one, such a message is dropped and logged: published, the broker would
    #: close the connection, and the next one would try it again
    smaller: bytes | None = None


def client_id(gateway_id: str) -> str:
    """The gateway's MQTT client id, as brokers have known it: ``aquami-gateway-{gateway_id}``."""
    return f"aquami-gateway-{gateway_id}"


#: MQTT 3.1.1 and 5 (3.1.3.1): a broker must take a client id of 1 to 23 letters and digits; it
#: may take more (Mosquitto, EMQX, HiveMQ and AWS IoT Core do), or refuse them
COMPLIANT_CLIENT_ID_MAX = 23


def compliant_client_id(gateway_id: str) -> str:
    """A client id every broker must take, for a broker that refused :func:`client_id` (over 23
    characters from a gateway_id over 8, or its ``-``): "aq", the gateway_id's first 13 letters and
    digits, and 8 hex digits of its SHA-256, so one gateway_id gives one client id at every start
    (two gateways on one gateway_id still take each other's session, as :func:`client_id` does)
    and two that differ only in punctuation ("gw-1", "gw1") do not share one."""
    letters = re.sub(r"[^A-Za-z0-9]", "", gateway_id)[:13]
    return f"aq{letters}{hashlib.sha256(gateway_id.encode()).hexdigest()[:8]}"


CommandHandler = Callable[[str, bytes], None]
FatalHandler = Callable[[str], None]


def encode_batch(gateway_id: str, batch_seq: int, bodies: list[str]) -> bytes:
    """The ``reads`` message (:class:`aquami.contracts.reads.ReadsBatch`'s JSON) with the readings'
    stored JSON spliced in as is: decoding and re-encoding them would cost more than the rest."""
    head = ReadsBatch(gateway_id, batch_seq, datetime.now(UTC)).to_json()
    del head["readings"]
    return (json.dumps(head, separators=(",", ":"))[:-1] + ',"readings":[' + ",".join(bodies) + "]}").encode()


def _packet_size(topic: str, payload: bytes) -> int:
    """The most a PUBLISH of ``payload`` on ``topic`` takes on the wire at QoS 1 or 2: fixed header
    (1 byte and up to 4 of length), topic (2 + its UTF-8), packet id (2) and MQTT 5's property
    length (1, no properties)."""
    return 5 + 2 + len(topic.encode()) + 2 + 1 + len(payload)


class Publisher:
    """``on_fatal`` is told why the publisher cannot go on (one of paho's callbacks failed: a bug);
    the publisher's thread then ends, and ``aquami gateway run`` stops and exits 1. Everything not
    acknowledged stays in the spool, for the restarted gateway."""

    def __init__(
        self,
        spool: Spool,
        gateway_id: str,
        endpoint: MqttEndpoint,
        *,
        batch_size: int = 500,
        window: int = 8,
        topic_root: str = "aquami/v1",
        options: MqttOptions | None = None,
        on_command: CommandHandler | None = None,
        outbox_limit: int = 1000,
        on_fatal: FatalHandler | None = None,
    ):
        self.spool = spool
        self.gateway_id = gateway_id
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.window = window
        self.topic_root = topic_root
        self.options = options or MqttOptions()
        self.on_command = on_command
        self._on_fatal = on_fatal
        #: why the publisher stopped on its own; None while it runs
        self.failure: str | None = None
        self._guard = CallbackGuard("gateway", self._fail, log)  # one for every session's client
        # said when the broker goes (or cannot be reached, or refuses), every 5 minutes while it stays
        # away, and when it is back: before, a warning at every reconnection attempt
        self.broker = Outage(log, f"MQTT broker {endpoint.url}")
        self.published_batches = 0
        self.acknowledged_batches = 0
        self.connections = 0
        self.protocol_in_use: str | None = None
        self.connected = threading.Event()
        self._outbox: collections.deque[Outgoing] = collections.deque(maxlen=outbox_limit)
        self._in_flight: dict[int, int] = {}  # message id -> batch_seq
        self._acked: list[int] = []  # batches acknowledged during the current loop turn
        self._messages_in_flight: dict[int, int] = {}  # message id -> spool message id (events)
        self._messages_acked: list[int] = []
        self._highest_message_sent = 0
        self._highest_sent = 0
        self._stop = threading.Event()
        self._draining = False
        self._backoff = Backoff(self.options.reconnect_min_s, self.options.reconnect_max_s)
        self._connected_at: float | None = None  # this session's CONNACK (time.monotonic)
        self.short_connections = 0  # dropped in a row before _STABLE_S
        self.taken_over = 0  # of those, ended by the broker's "Session taken over" (MQTT 5)
        self._session_taken_over = False  # this session's end: the broker's DISCONNECT 0x8E
        # a batch the broker refused (MQTT 5: not authorised, quota exceeded) is sent again after a
        # growing wait, not on the next loop turn: a refusal that lasts would have it resent 20 times
        # a second, each logged, for as long as the broker's rules stay as they are
        self.refused_batches = 0
        self._refusals = Backoff(min(_REFUSED_MIN_S, self.options.reconnect_max_s), self.options.reconnect_max_s)
        self._hold_batches_until = 0.0
        # a broker disconnects a client whose packet is larger than it takes; a batch over that
        # limit is resealed smaller (see _reseal), and later batches are sealed to fit
        self.resealed_batches = 0
        self._max_packet = self.options.max_packet_size  # this connection's: see _on_connect
        self._readings_per_batch = batch_size
        self._unsendable: set[int] = set()  # batches of one reading still too large: logged once
        self.messages_too_large = 0  # statuses, replies and events over the broker's limit: not sent
        self._oversized_messages: set[int] = set()  # such events (they stay in the spool): logged once
        self._version = VersionChoice(self.options.protocol, endpoint.url, log)
        self._connack: Any = None  # this session's CONNACK reason, None until it arrives
        self._connack_timed_out = False  # this session's CONNECT got no answer in time
        self._connect_started = 0.0  # when this session's CONNECT went out (time.monotonic)
        self._hold = False  # this session's CONNACK was taken, to ask in MQTT 5 beside it: send nothing yet
        self._client: mqtt.Client | None = None  # the session's client (after a recheck, the one kept)
        self._said_mqtt311_loses_refusals = False  # the warning, once: see _on_connect
        #: the MQTT client id: :func:`client_id`, or :func:`compliant_client_id` once a broker refused it
        self.client_id = client_id(gateway_id)
        self._thread = threading.Thread(target=self._run, name=f"publisher-{gateway_id}", daemon=True)

    @property
    def status_topic(self) -> str:
        return status_topic(self.gateway_id, self.topic_root)

    @property
    def command_topic(self) -> str:
        return f"{self.topic_root}/{self.gateway_id}/cmd/+"

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # called from other threads ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        """New readings are in the spool; the loop looks at it every tick anyway."""

    def send_durable(self, topic: str, payload: bytes, meter_health: Iterable[SavedMeter] = ()) -> None:
        """Queue a message (an event) in the spool's database: it survives restarts and is deleted
        on the broker's acknowledgement, like a batch; with the meter health it changes, stored in
        the same transaction (:meth:`gateway.spool.Spool.add_message`)."""
        self.spool.add_message(topic, payload, meter_health=meter_health)

    def send(self, topic: str, payload: bytes, *, retain: bool = False, smaller: bytes | None = None) -> None:
        """Queue a non-batch message; kept (up to the outbox limit, oldest dropped) while offline.
        ``smaller`` goes instead where ``payload`` is larger than the broker takes."""
        self._outbox.append(Outgoing(topic, payload, retain, smaller))

    def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop; with ``drain_timeout``, first give the publisher that long to empty the spool and outbox."""
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:  # (re)connecting included: the broker may be just back
            if self.connected.is_set() and self.spool.depth() == 0 and not self._outbox and not self._waiting():
                break
            time.sleep(0.05)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _waiting(self) -> bool:
        """Durable messages not yet acknowledged."""
        return bool(self._messages_in_flight) or self.spool.messages_waiting() > 0

    # the connection thread ------------------------------------------------------------------------
    def _new_client(self, version: Version | None = None) -> mqtt.Client:
        version = version or self._version.version
        protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            **kwargs,
        )
        client.max_inflight_messages_set(self.window + 64)  # our window bounds batches; room for the rest
        client.max_queued_messages_set(0)
        client.connect_timeout = 10.0
        if self.endpoint.username is not None:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            o = self.options
            client.tls_set(
                ca_certs=str(o.ca_file) if o.ca_file else None,
                certfile=str(o.cert_file) if o.cert_file else None,
                keyfile=str(o.key_file) if o.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.enable_logger(logging.getLogger("paho"))
        # An exception that leaves a callback ends the session, and the next one meets the same bug:
        # reconnecting for ever, nothing delivered. Each is caught, logged, and stops the publisher.
        guarded = self._guard
        client.on_connect = guarded(self._on_connect)
        client.on_disconnect = guarded(self._on_disconnect)
        client.on_publish = guarded(self._on_publish)
        client.on_message = guarded(self._on_message)
        log.debug("new MQTT %s client for %s", version, self.endpoint.url)
        return client

    def _fail(self, reason: str) -> None:
        """Stop the publisher for good: its loop ends after this turn (unacknowledged batches stay
        in the spool), and ``on_fatal`` hears why."""
        if self.failure is None:
            self.failure = reason
            log.error("%s: the gateway stops", reason)
            self._stop.set()
            if self._on_fatal is not None:
                self._on_fatal(reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._new_client()
            except Exception:  # a TLS file that does not load (yet): say so, try again after a while
                log.exception("cannot set up an MQTT client for %s", self.endpoint.url)
                self._stop.wait(self._backoff.next())
                continue
            self._client = client
            try:
                self._session(client)
            except Exception:  # the thread must outlive any one bad moment; the spool keeps the data
                log.exception("MQTT session failed")
            finally:
                client = self._client or client
                try:
                    self._settle_acks()
                except Exception:  # a failing disk: what was acknowledged stays in the spool and goes again
                    log.exception("cannot delete acknowledged messages from the spool")
                self.connected.clear()
                self._in_flight.clear()
                self._highest_sent = 0
                self._messages_in_flight.clear()
                self._highest_message_sent = 0
                _close(client)
            if self._stop.is_set():
                break
            self._note_how_long_it_lasted()
            if self._client_id_refused():
                continue
            connack = None if self._connack is None else int(getattr(self._connack, "value", 0))
            if self._version.ended(connack, self._connack_timed_out):
                continue
            delay = self._backoff.next()
            log.debug("reconnecting to %s in %.1f s", self.endpoint.url, delay)
            self._stop.wait(delay)

    def _note_how_long_it_lasted(self) -> None:
        """After a session: a connection that lasted starts the reconnection waits afresh; one after
        another dropped soon after CONNACK are counted, and said."""
        if self._connected_at is None:
            return
        lasted = time.monotonic() - self._connected_at
        self._connected_at = None
        if lasted >= _STABLE_S:
            self._backoff.reset()
            self.short_connections = 0
            self.taken_over = 0
            return
        self.short_connections += 1
        self.taken_over += self._session_taken_over
        if self.short_connections >= 3:
            self._say_short_connections()

    def _say_short_connections(self) -> None:
        """Why connections keep ending soon after CONNACK, as far as the broker said. Only an MQTT 5
        broker says that another client took the session over (two gateways on one gateway_id);
        before, that was what the warning said of any run of short connections, a link that merely
        kept dropping included, pointing the operator at a duplicate that did not exist."""
        head = "%d connections in a row to %s ended within %.0f s of being accepted"
        args: tuple[Any, ...] = (self.short_connections, self.endpoint.url, _STABLE_S)
        if self.taken_over:
            log.warning(
                head + ", %d of them taken over by another client with the client id %r (the broker said "
                '"Session taken over"): another gateway is configured with gateway_id %r',
                *args,
                self.taken_over,
                self.client_id,
                self.gateway_id,
            )
        elif self.protocol_in_use == "5":
            log.warning(
                head + " without a reason from the broker: the network or the broker keeps dropping the "
                'connection (another client with this client id would have been said: "Session taken over", '
                "from an MQTT 5 broker such as Mosquitto 2.0.15 on)",
                *args,
            )
        else:
            log.warning(
                head + " (MQTT 3.1.1: the broker gives no reason): the network or the broker keeps dropping "
                "the connection, or another gateway is configured with gateway_id %r (the broker lets one "
                "client at a time use its client id)",
                *args,
                self.gateway_id,
            )

    def _client_id_refused(self) -> bool:
        """Did this session's broker refuse the client id (CONNACK 0x85, or 3.1.1's return code 2)?
        The first time, the next connection, at once, uses :func:`compliant_client_id`; before, the
        gateway reconnected for ever with an id the broker would never take ("refused the
        connection: Client identifier not valid", every 5 minutes), nothing delivered."""
        if self._connack is None or getattr(self._connack, "value", 0) != _CLIENT_ID_NOT_VALID:
            return False
        compliant = compliant_client_id(self.gateway_id)
        if self.client_id == compliant:
            return False  # (refused too: said as the broker's refusal, and tried again after a wait)
        log.warning(
            "%s refused the client id %r (%d characters; MQTT brokers need take only 1 to %d letters and digits): "
            "connecting as %r",
            self.endpoint.url,
            self.client_id,
            len(self.client_id),
            COMPLIANT_CLIENT_ID_MAX,
            compliant,
        )
        self.client_id = compliant
        return True

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
        patience = self._version.patience(float(self.options.keepalive_s))
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

    def _settle_acks(self) -> None:
        if self._messages_acked:
            acked_messages, self._messages_acked = self._messages_acked, []
            self.spool.delete_messages(acked_messages)
        if self._acked:
            acked, self._acked = self._acked, []
            self.spool.acknowledge_many(acked)
            self.acknowledged_batches += len(acked)

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
        None: neither (the other is closed here, the held one by :meth:`_run`)."""
        asking = self._new_client("5")
        keepalive = self.options.keepalive_s
        patience = self._version.patience(float(keepalive))
        try:
            address = (self.endpoint.host, self.endpoint.port, keepalive)
            recheck = ask_beside(held, asking, address, patience, self.command_topic, self._stop)
            told = (recheck.connack, recheck.timed_out, recheck.held_answered)
            kept = None if self._stop.is_set() else self._version.rechecked(*told)
        except BaseException:
            _close(asking)
            raise
        if kept == "5":
            _close(held)
            self._client, self._connack = asking, recheck.reason
            client, properties = asking, recheck.properties
        else:
            _close(asking)
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

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        message_id = self._messages_in_flight.pop(mid, None)
        if message_id is not None:
            if not reason.is_failure:
                self._messages_acked.append(message_id)
            return
        batch_seq = self._in_flight.pop(mid, None)
        if batch_seq is None:  # a status or a reply
            return
        if reason.is_failure:
            # The broker took the message but refused it (MQTT 5): it stays, and goes again later.
            self.refused_batches += 1
            now = time.monotonic()
            if now >= self._hold_batches_until:  # the others of the window, refused with it, wait as long
                self._hold_batches_until = now + self._refusals.next()
            wait = self._hold_batches_until - now
            log.warning(
                "broker refused batch %s: %s; it stays in the spool, next try in %.1f s", batch_seq, reason, wait
            )
            self._highest_sent = min(self._highest_sent, batch_seq - 1)
            return
        self._refusals.reset()
        self._acked.append(batch_seq)  # deleted after this loop turn, all in one transaction

    def _reseal(self, batch: SealedBatch, size: int) -> None:
        """Seal a batch the broker would not take (it would disconnect us, and the batch would go
        first again after every reconnect: nothing delivered for good) again as smaller batches,
        and seal later ones that small from now on."""
        limit = self._max_packet or size
        n = len(batch.bodies)
        if n == 1:
            if batch.batch_seq not in self._unsendable:
                self._unsendable.add(batch.batch_seq)
                log.error(
                    "batch %s holds one reading of %d bytes, more than the broker takes (%d): it stays in the "
                    "spool until the broker takes more",
                    batch.batch_seq,
                    size,
                    limit,
                )
            return
        # readings differ in length: aim at 90% of the limit, and split again should a part still be over
        fits = max(1, min(n // 2, int(n * 0.9 * limit / size)))
        self._readings_per_batch = min(self._readings_per_batch, fits)
        parts = self.spool.reseal(batch.batch_seq, fits)
        self.resealed_batches += 1
        log.warning(
            "batch %s (%d readings, %d bytes) is more than the broker takes (%d bytes): sealed again as "
            "batches %s-%s; batches are now sealed with at most %d readings",
            batch.batch_seq,
            n,
            size,
            limit,
            parts[0],
            parts[-1],
            self._readings_per_batch,
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        name = message.topic.rsplit("/", 1)[-1]
        if self.on_command is not None and not message.topic.endswith("/reply"):
            try:
                self.on_command(name, bytes(message.payload))
            except Exception:
                log.exception("command %s failed", name)

    def _fits(self, topic: str, payload: bytes) -> bool:
        return self._max_packet is None or _packet_size(topic, payload) <= self._max_packet

    def _drain_outbox(self, client: mqtt.Client) -> None:
        while self._outbox:
            message = self._outbox.popleft()
            payload = message.payload
            if not self._fits(message.topic, payload):
                if message.smaller is None or not self._fits(message.topic, message.smaller):
                    self.messages_too_large += 1
                    log.error(
                        "message on %s not sent: %d bytes, more than the broker takes (%s)",
                        message.topic, len(payload), self._max_packet,
                    )  # fmt: skip
                    continue
                payload = message.smaller
            info = client.publish(message.topic, payload, qos=1, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._outbox.appendleft(message)
                return

    def _send_durable_messages(self, client: mqtt.Client) -> None:
        room = self.window - len(self._messages_in_flight)
        if room <= 0:
            return
        for message_id, topic, payload in self.spool.messages_after(self._highest_message_sent, room):
            if not self._fits(topic, payload):
                # it stays in the spool (nothing is deleted unacknowledged), passed over on this connection
                self._highest_message_sent = message_id
                if message_id not in self._oversized_messages:
                    self._oversized_messages.add(message_id)
                    self.messages_too_large += 1
                    log.error(
                        "event %d on %s is larger than the broker takes; it stays in the spool", message_id, topic
                    )
                continue
            info = client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._messages_in_flight[info.mid] = message_id
            self._highest_message_sent = message_id

    def _send_what_fits(self, client: mqtt.Client) -> None:
        room = self.window - len(self._in_flight)
        if room <= 0 or time.monotonic() < self._hold_batches_until:
            return
        batches = self.spool.sealed_batches(after_seq=self._highest_sent, limit=room)
        if len(batches) < room:
            batches += self.spool.seal_many(self._readings_per_batch, room - len(batches))
        topic = reads_topic(self.gateway_id, self.topic_root)
        for batch in batches:
            if not batch.bodies or batch.batch_seq in self._unsendable:
                continue
            payload = encode_batch(self.gateway_id, batch.batch_seq, batch.bodies)
            if not self._fits(topic, payload):
                self._reseal(batch, _packet_size(topic, payload))
                continue  # its readings go in the new batches, on the next turn
            info = client.publish(topic, payload, qos=self.options.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("publish of batch %s failed (%s); it stays in the spool", batch.batch_seq, info.rc)
                return
            self._in_flight[info.mid] = batch.batch_seq
            self._highest_sent = max(self._highest_sent, batch.batch_seq)
            self.published_batches += 1


def _close(client: mqtt.Client) -> None:
    """End a session's connection without a word to the publisher (its disconnect callback unset):
    a DISCONNECT if the broker accepted it, else just the socket closed."""
    client.on_disconnect = None
    if client.is_connected():
        client.disconnect()  # written at once: paho sends from this thread when there is no loop thread
    else:
        sock = client.socket()  # a connection that never got its CONNACK: just close it
        if sock is not None:
            sock.close()
