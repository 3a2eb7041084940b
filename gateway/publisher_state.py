"""The publisher's settings and the state its parts share (:mod:`gateway.publisher`): the
connection thread, the session, the client it connects with and the batches in flight each do one
job on the same object, on its one thread."""

from __future__ import annotations

import collections
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from aquami.contracts.reads import status_topic
from aquami.guarded import CallbackGuard
from aquami.mqtt import MqttEndpoint
from aquami.outage import Outage
from gateway.backoff import Backoff
from gateway.config import MqttOptions
from gateway.mqtt_client_id import client_id
from gateway.mqtt_version import VersionChoice
from gateway.outgoing import Outgoing
from gateway.spool import Spool

log = logging.getLogger("gateway.publisher")  # one logger for all the publisher's modules, as operators know it

_REFUSED_MIN_S = 1.0  # the first wait before a refused batch goes again

CommandHandler = Callable[[str, bytes], None]
FatalHandler = Callable[[str], None]


class PublisherState(ABC):
    """What :class:`gateway.publisher.Publisher` is given and keeps: the base of each of its parts."""

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
        # limit is resealed smaller (see InFlight._reseal), and later batches are sealed to fit
        self.resealed_batches = 0
        self._max_packet = self.options.max_packet_size  # this connection's: see Session._start_using
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
        self._said_mqtt311_loses_refusals = False  # the warning, once: see Session._start_using
        #: the MQTT client id: :func:`client_id`, or :func:`compliant_client_id` once a broker refused it
        self.client_id = client_id(gateway_id)
        self._thread = threading.Thread(target=self._run, name=f"publisher-{gateway_id}", daemon=True)

    @property
    def status_topic(self) -> str:
        return status_topic(self.gateway_id, self.topic_root)

    @property
    def command_topic(self) -> str:
        return f"{self.topic_root}/{self.gateway_id}/cmd/+"

    def _fail(self, reason: str) -> None:
        """Stop the publisher for good: its loop ends after this turn (unacknowledged batches stay
        in the spool), and ``on_fatal`` hears why."""
        if self.failure is None:
            self.failure = reason
            log.error("%s: the gateway stops", reason)
            self._stop.set()
            if self._on_fatal is not None:
                self._on_fatal(reason)

    @abstractmethod
    def _run(self) -> None:
        """The connection thread (:class:`gateway.connection_thread.ConnectionThread`)."""
