"""Publishing on a session: the outbox, durable messages and spool batches within the window, each
sized against the broker's largest packet (a batch over it resealed smaller), and the broker's
PUBACKs settled into the spool after each loop turn."""

from __future__ import annotations

import collections
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from gateway.backoff import Backoff
from gateway.outgoing import Outgoing, encode_batch, packet_size
from gateway.publisher_state import PublisherState, log
from gateway.spool import SealedBatch

_REFUSED_MIN_S = 1.0  # the first wait before a refused batch goes again


class InFlight:
    """What goes out on a session, and what the broker acknowledged of it. Used on the publisher's
    thread only, but for the outbox, which :meth:`gateway.publisher.Publisher.send` appends to from
    any thread (a deque's append and popleft are atomic)."""

    def __init__(self, state: PublisherState, outbox: collections.deque[Outgoing]) -> None:
        self._state = state
        self._outbox = outbox
        self.published_batches = 0
        self.acknowledged_batches = 0
        self._in_flight: dict[int, int] = {}  # message id -> batch_seq
        self._acked: list[int] = []  # batches acknowledged during the current loop turn
        self._messages_in_flight: dict[int, int] = {}  # message id -> spool message id (events)
        self._messages_acked: list[int] = []
        self._highest_message_sent = 0
        self._highest_sent = 0
        # a batch the broker refused (MQTT 5: not authorised, quota exceeded) is sent again after a
        # growing wait, not on the next loop turn: a refusal that lasts would have it resent 20 times
        # a second, each logged, for as long as the broker's rules stay as they are
        self.refused_batches = 0
        options = state.options
        self._refusals = Backoff(min(_REFUSED_MIN_S, options.reconnect_max_s), options.reconnect_max_s)
        self._hold_batches_until = 0.0
        # a broker disconnects a client whose packet is larger than it takes; a batch over that
        # limit is resealed smaller (see _reseal), and later batches are sealed to fit
        self.resealed_batches = 0
        self._max_packet = options.max_packet_size  # this connection's: see start_session
        self._readings_per_batch = state.batch_size
        self._unsendable: set[int] = set()  # batches of one reading still too large: logged once
        self.messages_too_large = 0  # statuses, replies and events over the broker's limit: not sent
        self._oversized_messages: set[int] = set()  # such events (they stay in the spool): logged once

    def start_session(self, properties: Any) -> None:
        """The broker accepted a session (``properties``: its CONNACK's): size what goes to what it takes."""
        announced = getattr(properties, "MaximumPacketSize", None)
        self._max_packet = min((n for n in (announced, self._state.options.max_packet_size) if n), default=None)
        self._readings_per_batch = self._state.batch_size
        self._unsendable.clear()  # this broker may take them

    def send(self, client: mqtt.Client) -> None:
        """One loop turn's publishing: the outbox, then durable messages, then batches."""
        self._drain_outbox(client)
        self._send_durable_messages(client)
        self._send_what_fits(client)

    def end_session(self) -> None:
        """The session ended: what was in flight on it goes again, from the spool, on the next one."""
        self._in_flight.clear()
        self._highest_sent = 0
        self._messages_in_flight.clear()
        self._highest_message_sent = 0

    def messages_unacknowledged(self) -> bool:
        """Durable messages sent on this session and not acknowledged yet (read from any thread)."""
        return bool(self._messages_in_flight)

    def settle_acks(self) -> None:
        """After each loop turn, and at the session's end: what the broker acknowledged leaves the spool."""
        if self._messages_acked:
            acked_messages, self._messages_acked = self._messages_acked, []
            self._state.spool.delete_messages(acked_messages)
        if self._acked:
            acked, self._acked = self._acked, []
            self._state.spool.acknowledge_many(acked)
            self.acknowledged_batches += len(acked)

    def on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
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
        parts = self._state.spool.reseal(batch.batch_seq, fits)
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

    def _fits(self, topic: str, payload: bytes) -> bool:
        return self._max_packet is None or packet_size(topic, payload) <= self._max_packet

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
        room = self._state.window - len(self._messages_in_flight)
        if room <= 0:
            return
        for message_id, topic, payload in self._state.spool.messages_after(self._highest_message_sent, room):
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
        room = self._state.window - len(self._in_flight)
        if room <= 0 or time.monotonic() < self._hold_batches_until:
            return
        batches = self._state.spool.sealed_batches(after_seq=self._highest_sent, limit=room)
        if len(batches) < room:
            batches += self._state.spool.seal_many(self._readings_per_batch, room - len(batches))
        topic = self._state.reads_topic
        for batch in batches:
            if not batch.bodies or batch.batch_seq in self._unsendable:
                continue
            payload = encode_batch(self._state.gateway_id, batch.batch_seq, batch.bodies)
            if not self._fits(topic, payload):
                self._reseal(batch, packet_size(topic, payload))
                continue  # its readings go in the new batches, on the next turn
            info = client.publish(topic, payload, qos=self._state.options.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("publish of batch %s failed (%s); it stays in the spool", batch.batch_seq, info.rc)
                return
            self._in_flight[info.mid] = batch.batch_seq
            self._highest_sent = max(self._highest_sent, batch.batch_seq)
            self.published_batches += 1
