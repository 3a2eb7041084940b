"""Publishing on a session: the outbox, durable messages and spool batches within the window, each
sized against the broker's largest packet (a batch over it resealed smaller), and the broker's
PUBACKs settled into the spool after each loop turn. The largest packet is the least of what the
broker announced, ``[mqtt] max_packet_size``, and what was learned from connections the broker
ended on a message too large (:mod:`gateway.size_limit`); batches, which can be sealed at any size,
are aimed lower than a learned limit until the broker takes them.

What an MQTT 5 broker refuses (a batch or an event) stays in the spool and goes again on the same
connection after a growing wait (:class:`gateway.refusals.RefusalHold`), from just below it; what
is still in flight from that window is passed over, not sent a second time. Each refusal is
counted; the log says it once per episode (gateway.refusals)."""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from gateway.outgoing import Outgoing, encode_batch, packet_size
from gateway.publisher_state import PublisherState, log
from gateway.refusals import RefusalHold
from gateway.size_limit import LearnedSizeLimit
from gateway.spool import SealedBatch

#: the ids of events too large are checked against the spool once there are this many, then each
#: time they have doubled since: at most twice as many as still wait, or this many
_TRIM_OVERSIZED_FROM = 64


class InFlight:
    """What goes out on a session, and what the broker acknowledged of it. Used on the publisher's
    thread only, but for the outbox, which :meth:`gateway.publisher.Publisher.send` appends to from
    any thread (a deque's append and popleft are atomic). ``clock`` and ``rng`` (the jitter of the
    waits after a refusal): the real ones but in a model test."""

    def __init__(
        self,
        state: PublisherState,
        outbox: collections.deque[Outgoing],
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._state = state
        self._outbox = outbox
        self.published_batches = 0
        self.acknowledged_batches = 0
        self._in_flight: dict[int, int] = {}  # message id -> batch_seq
        self._sizes: dict[int, int] = {}  # message id -> packet size, of every message in flight
        self._acked: list[int] = []  # batches acknowledged during the current loop turn
        self._messages_in_flight: dict[int, tuple[int, str]] = {}  # message id -> spool id, topic (events)
        self._messages_acked: list[int] = []
        self._highest_message_sent = 0
        self._highest_sent = 0
        # a batch or event the broker refused (MQTT 5: not authorised, quota exceeded) is sent again
        # after a growing wait (see gateway.refusals), not on the next loop turn
        self.refused_batches = 0
        self.refused_events = 0
        options = state.options
        # each said once per episode (the first refusal, then the broker taking one), each counted
        self._batch_refusals = RefusalHold("batch", options.reconnect_max_s, clock, rng)
        self._event_refusals = RefusalHold("event", options.reconnect_max_s, clock, rng)
        # a broker disconnects a client whose packet is larger than it takes; a batch over that
        # limit is resealed smaller (see _reseal), and later batches are sealed to fit
        self.resealed_batches = 0
        self._max_packet = options.max_packet_size  # this connection's: see start_session
        self._batch_max = options.max_packet_size  # the same, or lower while a limit is learned
        self._readings_per_batch = state.batch_size
        self._unsendable: set[int] = set()  # batches of one reading still too large: logged once
        self._resealed_under: int | None = None  # the limit the last reseal was said under
        # a limit the broker does not announce, learned from connections it ended on a message too large
        self.size_limit = LearnedSizeLimit()
        self.messages_too_large = 0  # statuses, replies and events over the broker's limit: not sent
        self._oversized_messages: set[int] = set()  # such events (they stay in the spool): logged once
        self._too_large_here: set[int] = set()  # such events passed over on this connection
        # both trimmed to what the spool still holds (see _forget_events_gone): before, a gateway that
        # ran for months kept the id of every event ever too large, in memory and in each drain's query
        self._trim_oversized_at = _TRIM_OVERSIZED_FROM
        self._dropped_on: set[str] = set()  # topics whose last status or reply was too large: said once

    def start_session(self, properties: Any) -> None:
        """The broker accepted a session (``properties``: its CONNACK's): size what goes to what it takes."""
        announced = getattr(properties, "MaximumPacketSize", None)
        limits = (announced, self._state.options.max_packet_size, self.size_limit.limit)
        before, self._max_packet = self._max_packet, min((n for n in limits if n), default=None)
        self._batch_max = min((n for n in (self._max_packet, self.size_limit.batch_limit) if n), default=None)
        self._too_large_here.clear()  # looked at again against this connection's limit
        if self.size_limit.limit is None:  # else the batch size learned with it holds
            self._readings_per_batch = self._state.batch_size
        if self._max_packet is None or (before is not None and self._max_packet > before):
            self._unsendable.clear()  # this broker takes more: they may go (else said once, not each session)

    def send(self, client: mqtt.Client) -> None:
        """One loop turn's publishing: the outbox, then durable messages, then batches."""
        self.send_outbox(client)
        self._send_durable_messages(client)
        self._send_what_fits(client)

    def end_session(self, dropped: bool, too_large: bool = False) -> bool:
        """The session ended: what was in flight on it goes again, from the spool, on the next one.
        ``dropped``: the gateway did not end it (the broker or the link did); ``too_large``: the
        broker said a packet was too large (DISCONNECT 0x95). True: a size limit was learned from it
        (:mod:`gateway.size_limit`), and the next connection may go at once."""
        learned = False
        if dropped:
            learned = self.size_limit.connection_ended(list(self._sizes.values()), too_large)
        self._in_flight.clear()
        self._sizes.clear()
        self._highest_sent = 0
        self._messages_in_flight.clear()
        self._highest_message_sent = 0
        return learned

    def messages_unacknowledged(self) -> bool:
        """Durable messages sent on this session and not acknowledged yet (read from any thread)."""
        return bool(self._messages_in_flight)

    def held_after_refusal(self) -> tuple[bool, bool]:
        """(batches, events): whether each kind waits after a refusal, none of it in flight. What the
        spool then holds of it goes only once the wait is over, most likely to be refused again: a
        drain at stop waits no longer for it (read from any thread)."""
        batches = self._batch_refusals.holding() and not self._in_flight
        events = self._event_refusals.holding() and not self._messages_in_flight
        return batches, events

    def only_too_large_left(self) -> tuple[bool, bool]:
        """(batches, events): whether all the spool holds of each kind is what cannot go on this
        connection (a reading or an event larger than the broker takes), none of it in flight. A
        drain at stop waits no longer for it: before, a gateway holding one reading too large waited
        its whole drain timeout at every stop (read from any thread: the sets copied first)."""
        spool = self._state.spool
        unsendable, too_large = frozenset(self._unsendable), frozenset(self._too_large_here)
        batches = bool(unsendable) and not self._in_flight and spool.depth_besides(unsendable) == 0
        events = bool(too_large) and not self._messages_in_flight and spool.messages_besides(too_large) == 0
        return batches, events

    def settle_acks(self) -> None:
        """After each loop turn, and at the session's end: what the broker acknowledged leaves the spool."""
        if self._messages_acked:
            acked_messages, self._messages_acked = self._messages_acked, []
            try:
                self._state.spool.delete_messages(acked_messages)
            except BaseException:  # a failing spool (gateway.publisher_spool): deleted at the next try
                self._messages_acked = acked_messages + self._messages_acked
                raise
            # one too large before (the broker takes more now): gone from the spool, it cannot come back
            # (ids are never used again), so it is not said twice
            self._oversized_messages.difference_update(acked_messages)
            self._too_large_here.difference_update(acked_messages)
            if self._oversized_messages:  # and those dropped meanwhile, now that events go again
                self._forget_events_gone(at_once=True)
        if self._acked:
            acked, self._acked = self._acked, []
            try:
                self._state.spool.acknowledge_many(acked)
            except BaseException:  # a failing spool (gateway.publisher_spool): deleted at the next try
                self._acked = acked + self._acked
                raise
            self.acknowledged_batches += len(acked)

    def on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        size = self._sizes.pop(mid, 0)
        if not reason.is_failure:
            self.size_limit.taken(size)
        event = self._messages_in_flight.pop(mid, None)
        if event is not None:
            self._on_event_answer(*event, reason)
            return
        batch_seq = self._in_flight.pop(mid, None)
        if batch_seq is None:  # a status or a reply
            return
        if reason.is_failure:
            # The broker took the message but refused it (MQTT 5): it stays, and goes again later.
            # Each refusal counted; said once until the broker takes a batch (before: a warning each).
            self.refused_batches += 1
            self._batch_refusals.refused(batch_seq, self._state.reads_topic, reason)
            self._highest_sent = min(self._highest_sent, batch_seq - 1)
            return
        self._batch_refusals.accepted(batch_seq, self._state.reads_topic)
        self._acked.append(batch_seq)  # deleted after this loop turn, all in one transaction

    def _on_event_answer(self, message_id: int, topic: str, reason: Any) -> None:
        """An event's PUBACK. Refused (MQTT 5), it stays in the spool and goes again after a growing
        wait, said once for as long as its topic is refused; before, it was dropped from the session
        without a word, and sent again only after a reconnect."""
        if reason.is_failure:
            self.refused_events += 1
            self._event_refusals.refused(message_id, topic, reason)
            self._highest_message_sent = min(self._highest_message_sent, message_id - 1)
            return
        self._event_refusals.accepted(message_id, topic)
        self._messages_acked.append(message_id)

    def _reseal(self, batch: SealedBatch, size: int) -> None:
        """Seal a batch the broker would not take (it would disconnect us, and the batch would go
        first again after every reconnect: nothing delivered for good) again as smaller batches,
        and seal later ones that small from now on. A batch of one reading goes if it is under the
        broker's limit (a learned limit's batches are aimed lower), else it stays, said once."""
        n = len(batch.bodies)
        if n == 1:
            limit = self._max_packet or size
            if batch.batch_seq not in self._unsendable:
                self._unsendable.add(batch.batch_seq)
                learned = self.size_limit.limit is not None and limit == self.size_limit.limit
                log.error(
                    "batch %s holds one reading of %d bytes, more than the broker takes (%d): it stays in the "
                    "spool until the broker takes more%s",
                    batch.batch_seq,
                    size,
                    limit,
                    " and the gateway restarts (the limit was learned from the connections the broker ended)"
                    if learned
                    else "",
                )
            return
        limit = self._batch_max or size
        # readings differ in length: aim at 90% of the limit, and split again should a part still be
        # over. Later batches are sealed with as many readings of the batch's median length as fit:
        # before, its mean, and one reading much larger than the others (over the limit alone) had
        # every later batch sealed with a single reading
        lengths = sorted(len(body) + 1 for body in batch.bodies)  # each with its comma
        overhead = size - sum(lengths)  # the topic, the header, the batch's own fields
        typical = max(1, int((0.9 * limit - overhead) / lengths[(n - 1) // 2]))  # the lower median
        fits = max(1, min(n // 2, typical))
        self._readings_per_batch = min(self._readings_per_batch, typical)
        parts = self._state.spool.reseal(batch.batch_seq, fits)
        self.resealed_batches += 1
        # the first batch resealed under a limit is a warning, the others under it INFO
        said, self._resealed_under = self._resealed_under == limit, limit
        log.log(
            logging.INFO if said else logging.WARNING,
            "batch %s (%d readings, %d bytes) is more than %s (%d bytes): sealed again as "
            "batches %s-%s; batches are now sealed with at most %d readings",
            batch.batch_seq,
            n,
            size,
            "batches are sealed to while a limit is learned" if limit != self._max_packet else "the broker takes",
            limit,
            parts[0],
            parts[-1],
            self._readings_per_batch,
        )

    def _fits(self, topic: str, payload: bytes) -> bool:
        return self._max_packet is None or packet_size(topic, payload) <= self._max_packet

    def send_outbox(self, client: mqtt.Client) -> None:
        """Statuses and replies, from memory: no spool needed (sent each turn, the spool failing or not)."""
        while self._outbox:
            message = self._outbox.popleft()
            payload = message.payload
            if not self._fits(message.topic, payload):
                if message.smaller is None or not self._fits(message.topic, message.smaller):
                    self._drop_too_large(message)
                    continue
                payload = message.smaller
            info = client.publish(message.topic, payload, qos=1, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._outbox.appendleft(message)
                return
            self._dropped_on.discard(message.topic)  # one goes there again: a later drop is said again
            self._sizes[info.mid] = packet_size(message.topic, payload)

    def _drop_too_large(self, message: Outgoing) -> None:
        """A status or reply larger than the broker takes, its smaller form too (or none): published,
        the broker would end the connection. Counted each time; said once per topic until one goes on
        it again: before, a status too large was an error at every status interval, for good."""
        self.messages_too_large += 1
        if message.topic in self._dropped_on:
            return
        self._dropped_on.add(message.topic)
        log.error(
            "message on %s not sent: %d bytes, more than the broker takes (%s); later ones on it too large "
            "are only counted (health's messages_too_large)",
            message.topic, len(message.payload), self._max_packet,
        )  # fmt: skip

    def _send_durable_messages(self, client: mqtt.Client) -> None:
        room = self._state.window - len(self._messages_in_flight)
        if room <= 0 or self._event_refusals.holding():
            return
        in_flight = {message_id for message_id, _ in self._messages_in_flight.values()}
        for message_id, topic, payload in self._state.spool.messages_after(self._highest_message_sent, room):
            if message_id in in_flight:  # sent before a refusal just below it: not twice
                self._highest_message_sent = message_id
                continue
            if not self._fits(topic, payload):
                # it stays in the spool (nothing is deleted unacknowledged), passed over on this connection
                self._highest_message_sent = message_id
                self._too_large_here.add(message_id)
                if message_id not in self._oversized_messages:
                    self._oversized_messages.add(message_id)
                    self._forget_events_gone()
                    self.messages_too_large += 1
                    log.error(
                        "event %d on %s is larger than the broker takes; it stays in the spool", message_id, topic
                    )
                continue
            info = client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._messages_in_flight[info.mid] = (message_id, topic)
            self._sizes[info.mid] = packet_size(topic, payload)
            self._highest_message_sent = message_id

    def _forget_events_gone(self, at_once: bool = False) -> None:
        """Forget events too large that have left the spool: the oldest dropped beyond its limit
        (:meth:`gateway.spool.Spool.add_message`, on another thread), the others acknowledged (see
        :meth:`settle_acks`). Every id under the oldest still waiting is gone for good (the spool's
        ids are never used again): no event is said twice. Checked once the ids have doubled, or
        ``at_once``."""
        if not at_once and len(self._oversized_messages) < self._trim_oversized_at:
            return
        oldest = self._state.spool.messages_after(0, 1)
        first = oldest[0][0] if oldest else self._highest_message_sent + 1
        self._oversized_messages = {i for i in self._oversized_messages if i >= first}
        self._too_large_here = {i for i in self._too_large_here if i >= first}
        self._trim_oversized_at = max(_TRIM_OVERSIZED_FROM, 2 * len(self._oversized_messages))

    def _send_what_fits(self, client: mqtt.Client) -> None:
        room = self._state.window - len(self._in_flight)
        if room <= 0 or self._batch_refusals.holding():
            return
        batches = self._state.spool.sealed_batches(after_seq=self._highest_sent, limit=room)
        if len(batches) < room:
            batches += self._state.spool.seal_many(self._readings_per_batch, room - len(batches))
        topic = self._state.reads_topic
        in_flight = set(self._in_flight.values())
        for batch in batches:
            if batch.batch_seq in in_flight:
                # sent before a refusal just below it, and not acknowledged yet: sent again, it was
                # delivered twice and counted twice in acknowledged_batches
                self._highest_sent = max(self._highest_sent, batch.batch_seq)
                continue
            if not batch.bodies or batch.batch_seq in self._unsendable:
                # passed over for this connection: before, not moved past, such batches (the oldest)
                # were listed first at every turn, and as many as the window held up all the others
                self._highest_sent = max(self._highest_sent, batch.batch_seq)
                continue
            payload = encode_batch(self._state.gateway_id, batch.batch_seq, batch.bodies)
            size = packet_size(topic, payload)
            over_batches = self._batch_max is not None and size > self._batch_max and len(batch.bodies) > 1
            if over_batches or (self._max_packet is not None and size > self._max_packet):
                self._reseal(batch, size)
                # its readings go in the new batches (higher batch_seqs), on the next turn; one reading
                # too large is passed over for this connection
                self._highest_sent = max(self._highest_sent, batch.batch_seq)
                continue
            info = client.publish(topic, payload, qos=self._state.options.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("publish of batch %s failed (%s); it stays in the spool", batch.batch_seq, info.rc)
                return
            self._in_flight[info.mid] = batch.batch_seq
            self._sizes[info.mid] = size
            self._highest_sent = max(self._highest_sent, batch.batch_seq)
            self.published_batches += 1
