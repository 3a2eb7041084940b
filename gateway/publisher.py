"""Delivery: publish sealed spool batches and delete each only when the broker has acknowledged it.

One thread owns the MQTT connection and drives paho's network loop itself (``client.loop``), so the
PUBACK callback, the spool work and every publish happen on that thread: no cross-thread handoff
of acknowledgements. Each connection attempt uses a fresh paho client with a clean session; after a
reconnect, every sealed and unacknowledged batch is sent again from the spool, oldest first, with its
original ``batch_seq``. Only the batches in flight when the connection broke can arrive twice, and
the collector's ``(meter_id, ts)`` key makes the repeat a no-op: delivery is at least once.

Delivery is not in order, and need not be: a batch too large for the broker is resealed under new,
higher batch_seqs (:meth:`gateway.inflight.InFlight._reseal`), after batches sealed before it that
go first; a batch an MQTT 5 broker refused goes again after later ones of its window were
acknowledged; a batch of one reading too large waits while later ones go. batch_seq is monotonic
in sealing, not in arrival. The collector keys readings on ``(meter_id, ts)``, checks batch_seq for
neither gaps nor order, and judges nothing by arrival order
(``tests/collector/test_ingest_replay.py``: any order, with repeats, gives the same table;
detection takes up late arrivals by ``received_at``).

Reconnection waits grow exponentially with jitter (:class:`gateway.backoff.Backoff`). With
``protocol = "auto"`` the first attempt speaks MQTT 5, and :class:`gateway.mqtt_version.VersionChoice`
decides when to fall back to MQTT 3.1.1: at once for a broker that says "unsupported protocol
version"; after silence only once a working link has shown it (a silent link is not a broker
without MQTT 5). MQTT 5 matters: only it lets a broker refuse a batch (an MQTT 3.1.1 broker
acknowledges what its ACL drops) and announce the largest packet it takes.

:class:`Publisher` is the entry point. It owns its parts, one job each, and hands each what it needs:
:class:`gateway.publisher_state.PublisherState` (what they all share: the settings, and the stop and
connected signals), :class:`gateway.inflight.InFlight` (publishing within the window, PUBACKs
settled into the spool; messages as :mod:`gateway.outgoing` puts them on the wire),
:class:`gateway.mqtt_client.ClientFactory` (each session's paho client: version, client id from
:mod:`gateway.mqtt_client_id`, TLS), :class:`gateway.broker_link.BrokerLink` (what lasts from one
session to the next: the outage, connections, the version in use), :class:`gateway.mqtt_session.Session`
(one per connection: CONNECT, CONNACK, its callbacks, its loop and end),
:class:`gateway.connection_thread.ConnectionThread` (the thread: sessions one after another, the waits
between them, what each said of the broker), :class:`gateway.publisher_spool.PublisherSpool` (the spool
failing under it, said apart from the broker, the session kept) and
:class:`gateway.publisher_failure.Failure` (a callback that failed stops it all). Everything but the
outbox, the two events and the counts read for health is used on the publisher's thread only.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as mqtt

from aquami.mqtt import MqttEndpoint
from aquami.outage import Outage
from gateway.broker_link import BrokerLink
from gateway.config import MqttOptions
from gateway.connection_thread import ConnectionThread
from gateway.health import SavedMeter
from gateway.inflight import InFlight
from gateway.mqtt_client import ClientFactory
from gateway.mqtt_client_id import COMPLIANT_CLIENT_ID_MAX, client_id, compliant_client_id
from gateway.mqtt_session import Session
from gateway.mqtt_version import VersionChoice
from gateway.outgoing import Outgoing, encode_batch
from gateway.publisher_failure import Failure
from gateway.publisher_spool import SPOOL_ERRORS, PublisherSpool
from gateway.publisher_state import CommandHandler, FatalHandler, PublisherState, log
from gateway.spool import Spool

__all__ = [
    "COMPLIANT_CLIENT_ID_MAX",
    "CommandHandler",
    "FatalHandler",
    "Outgoing",
    "Publisher",
    "client_id",
    "compliant_client_id",
    "encode_batch",
]


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
        options = options or MqttOptions()
        self._state = PublisherState(spool, gateway_id, endpoint, options, batch_size, window, topic_root)
        self.on_command = on_command  # given to each session
        self._failure = Failure(self._state.stop, on_fatal)
        self._outbox: collections.deque[Outgoing] = collections.deque(maxlen=outbox_limit)
        self._inflight = InFlight(self._state, self._outbox)
        self._version = VersionChoice(options.protocol, endpoint.url, log)
        self._clients = ClientFactory(self._state, self._version)
        self._link = BrokerLink(self._state)
        self._spool_trouble = PublisherSpool(spool.path)  # the spool failing under it: said apart from the broker
        self._connection = ConnectionThread(
            self._state,
            self._inflight,
            self._clients,
            self._version,
            self._link,
            self._new_session,
            self._spool_trouble,
        )
        self._thread = threading.Thread(target=self._connection.run, name=f"publisher-{gateway_id}", daemon=True)

    def _new_session(self, client: mqtt.Client) -> Session:
        return Session(
            client,
            state=self._state,
            inflight=self._inflight,
            clients=self._clients,
            version=self._version,
            link=self._link,
            guard=self._failure.guard,
            on_command=self.on_command,
            spool=self._spool_trouble,
        )

    # called from other threads ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

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
        """Stop; with ``drain_timeout``, first give the publisher that long to empty the spool and
        outbox. What the broker refused, waiting for its next try, is not waited for, nor a reading
        or an event larger than the broker takes: before, each had the drain wait its whole timeout.
        A spool that fails as the drain asks what it holds ends the drain, said in one line and kept as
        :attr:`failure` (the gateway exits 1); the stop goes on."""
        try:
            self._drain(drain_timeout)
        except SPOOL_ERRORS as error:  # before, raised to the caller, the publisher's thread left running
            self._failure.at_stop(self._spool_trouble.failed_at_stop(error))
        self._state.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._link.outage.stop()

    def _drain(self, drain_timeout: float) -> None:
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:  # (re)connecting included: the broker may be just back
            if self.connected.is_set() and not self._outbox and self._drained():
                break
            time.sleep(0.05)

    def _drained(self) -> bool:
        """Readings and durable messages all acknowledged, or each kind left waiting after a refusal,
        or all that is left of it too large for the broker."""
        batches_held, events_held = self._inflight.held_after_refusal()
        batches_too_large, events_too_large = self._inflight.only_too_large_left()
        batches_done = batches_held or batches_too_large or self.spool.depth() == 0
        events_done = (
            events_held
            or events_too_large
            or not (self._inflight.messages_unacknowledged() or self.spool.messages_waiting())
        )
        return batches_done and events_done

    # what the parts keep, as it was read before they were parts -------------------------------
    @property
    def spool(self) -> Spool:
        return self._state.spool

    @property
    def window(self) -> int:
        return self._state.window

    @property
    def connected(self) -> threading.Event:
        return self._state.connected

    @property
    def failure(self) -> str | None:
        """Why the publisher stopped on its own, or why its stop did not end well (its spool failing
        as it drained); None while it runs, and after a stop that went well."""
        return self._failure.reason

    @property
    def broker(self) -> Outage:
        return self._link.outage

    @broker.setter
    def broker(self, outage: Outage) -> None:  # a test's, to be reminded sooner
        self._link.outage = outage

    @property
    def connections(self) -> int:
        return self._link.connections

    @property
    def protocol_in_use(self) -> str | None:
        return self._link.protocol_in_use

    @property
    def short_connections(self) -> int:
        """Dropped in a row soon after CONNACK."""
        return self._connection.short_connections

    @property
    def taken_over(self) -> int:
        """Of those, ended by the broker's "Session taken over" (MQTT 5)."""
        return self._connection.taken_over

    @property
    def published_batches(self) -> int:
        return self._inflight.published_batches

    @property
    def acknowledged_batches(self) -> int:
        return self._inflight.acknowledged_batches

    @property
    def refused_batches(self) -> int:
        return self._inflight.refused_batches

    @property
    def refused_events(self) -> int:
        """Failure PUBACKs for events (MQTT 5): each refused event stays in the spool and goes again."""
        return self._inflight.refused_events

    @property
    def resealed_batches(self) -> int:
        return self._inflight.resealed_batches

    @property
    def messages_too_large(self) -> int:
        """Statuses, replies and events over the broker's limit: not sent."""
        return self._inflight.messages_too_large
