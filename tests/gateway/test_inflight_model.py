"""InFlight against a model broker, on a fake clock: whatever the broker refuses or takes, in
whatever order readings and events come, and however long each answer takes, nothing goes twice
on a session while its first send waits for an answer, each batch is counted once as acknowledged,
nothing leaves the spool unacknowledged, and what was refused goes again on the same session once
its wait is over. The spool is a real one; only the broker (and its wire) is modelled: it answers a
session's PUBLISHes in order (MQTT 5.0 §4.6). As in the publisher's loop, a turn (publishing what
fits) follows each step.

Before, a refused batch went again from just below it, and the later batches of its window still
waiting for their answer went again with it (the shortest sequence: two batches sent, the first
refused, its wait over); a refused event went again only after a reconnect."""

from __future__ import annotations

import collections
import json
import logging
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.inflight import InFlight
from gateway.outgoing import Outgoing
from gateway.publisher_state import PublisherState
from gateway.spool import Spool

READS = "aquami/v1/gw/reads"
EVENTS = "aquami/v1/gw/events"
_TAKEN = ReasonCode(PacketTypes.PUBACK, identifier=0)
_REFUSED = ReasonCode(PacketTypes.PUBACK, identifier=135)  # not authorised


class Wire:
    """What :class:`InFlight` publishes on: a session's PUBLISHes, waiting for their answers."""

    def __init__(self) -> None:
        self._mid = 0
        self.waiting: collections.deque[tuple[int, str, bytes]] = collections.deque()  # mid, topic, payload

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        self._mid += 1
        self.waiting.append((self._mid, topic, payload))
        return mqtt.MQTTMessageInfo(self._mid)


def _key(topic: str, payload: bytes) -> tuple[str, int]:
    """A batch by its batch_seq, an event by its number."""
    if topic == READS:
        return "batch", int(json.loads(payload)["batch_seq"])
    return "event", int(json.loads(payload)["n"])


class _Said(logging.Handler):
    """The publisher's lines on refusals, as (level, "refused TOPIC" or "took TOPIC after N")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if refused := re.match(r"broker refused (?:batch|event) \d+ on (\S+): .*\(reason code 135\)", message):
            self.lines.append((record.levelno, f"refused {refused[1]}"))
        elif took := re.fullmatch(r"broker took (?:batch|event) \d+ on (\S+), after (\d+) refusals", message):
            self.lines.append((record.levelno, f"took {took[1]} after {took[2]}"))
        elif "refused" in message or "took" in message:
            self.lines.append((record.levelno, message))  # a line of another shape: a failure to see


class Delivery(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._dir = Path(tempfile.mkdtemp(prefix="aquami-inflight-"))
        self.spool = Spool(self._dir / "s.sqlite")
        options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=4.0)
        state = PublisherState(self.spool, "gw", MqttEndpoint.parse("mqtt://127.0.0.1:1"), options, 2, 3, "aquami/v1")
        outbox = collections.deque[Outgoing]()
        self.inflight = InFlight(state, outbox, clock=lambda: self.now, rng=random.Random(0))
        self.inflight.start_session(None)
        self.wire = Wire()
        self.events = 0
        self.readings = 0
        self.acked_batches: set[int] = set()
        self.events_left: set[int] = set()  # events queued and not acknowledged
        self.refused_at: dict[str, float] = {}  # topic -> when its last refusal came, nothing taken since
        # what the log should say: each episode's first refusal, and its end with its count
        self.episodes: dict[str, int] = {}  # topic -> refusals since the broker last took one on it
        self.should_say: list[tuple[int, str]] = []  # (level, "refused TOPIC" or "took TOPIC after N")
        self.said = _Said()
        self._logger = logging.getLogger("gateway.publisher")
        self._level = self._logger.level
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self.said)

    def teardown(self) -> None:
        self._logger.removeHandler(self.said)
        self._logger.setLevel(self._level)
        self.spool.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _turn(self) -> None:
        """A loop turn: publish what fits."""
        self.inflight.send(cast(mqtt.Client, self.wire))

    @rule(n=st.integers(1, 3))
    def readings_come(self, n: int) -> None:
        first = self.readings
        self.readings += n
        self.spool.append(
            [
                {"meter_id": f"WM-{i}", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}
                for i in range(first, self.readings)
            ]
        )
        self._turn()

    @rule()
    def an_event_comes(self) -> None:
        self.events += 1
        self.spool.add_message(EVENTS, json.dumps({"n": self.events}).encode())
        self.events_left.add(self.events)
        self._turn()

    @precondition(lambda self: bool(self.wire.waiting))
    @rule(refused=st.booleans())
    def the_broker_answers(self, refused: bool) -> None:
        """The oldest PUBLISH waiting is taken or refused (the broker's rules may change at any time)."""
        mid, topic, payload = self.wire.waiting.popleft()
        self.inflight.on_publish(cast(mqtt.Client, self.wire), None, mid, _REFUSED if refused else _TAKEN, None)
        self.inflight.settle_acks()
        kind, key = _key(topic, payload)
        if refused:
            self.refused_at[topic] = self.now
            if not self.episodes.get(topic):
                self.should_say.append((logging.WARNING, f"refused {topic}"))
            self.episodes[topic] = self.episodes.get(topic, 0) + 1
        else:
            self.refused_at.pop(topic, None)
            if refusals := self.episodes.pop(topic, 0):
                self.should_say.append((logging.INFO, f"took {topic} after {refusals}"))
            if kind == "batch":
                self.acked_batches.add(key)
            else:
                self.events_left.discard(key)
        self._turn()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 5.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self._turn()
        # the waits here are at most 4 s: past that since the last refusal, with none of the events
        # on the wire (the window free), the refused event is on it again, on this session
        if EVENTS in self.refused_at and self.now - self.refused_at[EVENTS] > 4.0:
            assert any(topic == EVENTS for _, topic, _ in self.wire.waiting), "a refused event waits for a reconnect"

    @rule()
    def a_reconnect(self) -> None:
        self.inflight.settle_acks()
        self.inflight.end_session(dropped=True)  # a reconnect the broker or the link caused
        self.wire = Wire()
        self.inflight.start_session(None)
        self._turn()

    @invariant()
    def nothing_twice_on_the_wire(self) -> None:
        keys = [_key(topic, payload) for _, topic, payload in self.wire.waiting]
        assert len(keys) == len(set(keys)), f"sent again while its first send waits for an answer: {keys}"

    @invariant()
    def refusals_said_once_per_episode(self) -> None:
        """A topic's first refusal said, the retries only counted, the broker taking one again said
        with the episode's count: batches as events (before, a warning for each refused batch)."""
        assert self.said.lines == self.should_say

    @invariant()
    def each_batch_counted_once(self) -> None:
        assert self.inflight.acknowledged_batches == len(self.acked_batches)

    @invariant()
    def nothing_leaves_the_spool_unacknowledged(self) -> None:
        waiting = {json.loads(p)["n"] for _, _, p in self.spool.messages_after(0, 10_000)}
        assert waiting == self.events_left
        unacked = {b.batch_seq for b in self.spool.sealed_batches(0, 10_000)}
        assert not unacked & self.acked_batches


# a loaded machine's slowness is no failure: the model's time is its own
Delivery.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDelivery = Delivery.TestCase


def test_the_shortest_duplicate(tmp_path: Path) -> None:
    """The sequence above, spelt out: two batches sent, the first refused, its wait over."""
    machine = Delivery()
    try:
        machine.readings_come(1)
        machine.readings_come(1)
        machine.the_broker_answers(refused=True)
        machine.time_passes(5.0)
        machine.nothing_twice_on_the_wire()
    finally:
        machine.teardown()
