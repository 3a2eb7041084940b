"""A broker's size limit it does not announce, through a real Mosquitto.

Mosquitto's ``message_size_limit`` is told to no client: an MQTT 5 client's publish over it gets
PUBACK 0x95, a reason code MQTT 5 does not allow in a PUBACK, which paho takes for a protocol error
and closes the connection on; an MQTT 3.1.1 client's gets a plain PUBACK, the message dropped.
Its ``max_packet_size`` is announced to MQTT 5 clients only (``test_delivery``), and closes an
MQTT 3.1.1 client's connection. Before, the oldest batch went first after every reconnect, the
connection ended again, and nothing was delivered for as long as the gateway ran."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.inflight import InFlight
from gateway.outgoing import packet_size
from gateway.publisher import Publisher
from gateway.size_limit import LearnedSizeLimit
from gateway.spool import Spool
from tests.gateway.helpers import Subscriber
from tests.services import MosquittoBroker

pytestmark = pytest.mark.services

LIMIT = 4096
LEARNED = "the broker ended two connections in a row"
ONE_READING = "holds one reading of"


def _reading(n: int, note: str = "") -> dict[str, object]:
    reading: dict[str, object] = {"meter_id": f"WM-{n:05d}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)}
    if note:
        reading["note"] = note
    return reading


def _delivered(subscriber: Subscriber) -> set[str]:
    return {r["meter_id"] for b in subscriber.payloads("/reads") for r in b["readings"]}


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.publisher" and text in r.getMessage()]


@dataclass(frozen=True)
class _Rig:
    """A real Mosquitto with a size limit, a gateway's spool and publisher (not yet started: a test
    fills the spool or the outbox first), and a subscriber to what reaches the broker."""

    broker: MosquittoBroker
    spool: Spool
    subscriber: Subscriber
    publisher: Publisher


@contextmanager
def _limited_broker(
    tmp_path: Path,
    setting: str,
    topics: tuple[str, ...] = ("aquami/v1/+/reads",),
    *,
    protocol: Literal["5", "3.1.1"] = "5",
    max_packet_size: int | None = None,
    batch_size: int = 100,
    window: int = 8,
) -> Iterator[_Rig]:
    """The rig every test here runs on, torn down in reverse whatever the test's outcome."""
    broker = MosquittoBroker(settings=[setting])
    broker.start()
    try:
        spool = Spool(tmp_path / "s.sqlite")
        try:
            subscriber = Subscriber(broker.url, list(topics))
            try:
                options = MqttOptions(
                    protocol=protocol,
                    reconnect_min_s=0.05,
                    reconnect_max_s=0.5,
                    max_packet_size=max_packet_size,
                )
                endpoint = MqttEndpoint.parse(broker.url)
                publisher = Publisher(
                    spool, "gw-limit", endpoint, batch_size=batch_size, window=window, options=options
                )
                try:
                    yield _Rig(broker, spool, subscriber, publisher)
                finally:
                    publisher.stop()
            finally:
                subscriber.close()
        finally:
            spool.close()
    finally:
        broker.stop()


def _wait(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("protocol", "setting"), [("5", f"message_size_limit {LIMIT}"), ("3.1.1", f"max_packet_size {LIMIT}")]
)
def test_batches_over_a_limit_the_broker_does_not_announce_are_delivered_smaller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: Literal["5", "3.1.1"], setting: str
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    with _limited_broker(tmp_path, setting, protocol=protocol) as rig:
        rig.spool.append(_reading(n) for n in range(300))  # batches of 100: about 8 KB each
        rig.publisher.start()
        _wait(
            lambda: rig.spool.depth() == 0,
            30,
            "the readings stayed in the spool: the broker kept ending the connection",
        )
        _wait(lambda: len(_delivered(rig.subscriber)) == 300, 10, "readings acknowledged but not delivered")
        assert all(len(p) <= LIMIT for t, p in rig.subscriber.messages if t.endswith("/reads"))
        connections = rig.publisher.connections
        assert connections <= 8, f"{connections} connections for 3 batches"
        warned = [r for r in _said(caplog, LEARNED) if r.levelno == logging.WARNING]
        assert len(warned) == 1, [r.getMessage() for r in _said(caplog, LEARNED)]
        rig.spool.append(_reading(n) for n in range(300, 600))  # later batches sealed to fit: no more ends
        _wait(lambda: len(_delivered(rig.subscriber)) == 600, 10, "later readings not delivered")
        assert rig.publisher.connections == connections


def test_a_reading_the_broker_never_takes_is_said_once_and_kept_while_the_others_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    with _limited_broker(tmp_path, f"message_size_limit {LIMIT}") as rig:
        spool, publisher = rig.spool, rig.publisher
        spool.append(
            [*(_reading(n) for n in range(40)), _reading(40, "x" * 6000), *(_reading(n) for n in range(41, 80))]
        )
        publisher.start()
        others = {f"WM-{n:05d}" for n in range(80) if n != 40}
        _wait(lambda: _delivered(rig.subscriber) == others, 30, "the other readings were held up by the one too large")
        _wait(lambda: spool.depth() == 1, 5, "the other readings stayed in the spool")
        (said,) = _said(caplog, ONE_READING)
        assert said.levelno == logging.ERROR and "restarts" in said.getMessage()
        connections = publisher.connections
        rig.broker.stop()  # a reconnection to the same broker: the reading is not sent again, nor said again
        rig.broker.start()
        _wait(lambda: publisher.connections > connections and publisher.connected.is_set(), 20, "no reconnection")
        acknowledged = publisher.acknowledged_batches
        spool.append(_reading(n) for n in range(80, 110))
        _wait(lambda: spool.depth() == 1, 10, "later readings not delivered")
        # in batches of many readings: the one reading too large does not make every batch one reading
        assert publisher.acknowledged_batches - acknowledged <= 2
        assert len(_said(caplog, ONE_READING)) == 1
        assert publisher.connections == connections + 1
        (kept,) = spool.sealed_batches(0, 10)
        assert [r["meter_id"] for r in kept.readings] == ["WM-00040"]


@pytest.mark.parametrize("max_packet_size", [None, LIMIT])
def test_mqtt311_loses_what_is_over_message_size_limit_unless_max_packet_size_is_set_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, max_packet_size: int | None
) -> None:
    """In MQTT 3.1.1 Mosquitto acknowledges a publish over its message_size_limit and drops it: the
    spool deletes it as delivered, and nothing can tell the gateway. Without ``max_packet_size`` it
    says so, once; with it set to the limit, every reading is delivered and nothing is said."""
    caplog.set_level(logging.WARNING, logger="gateway.publisher")
    setting = f"message_size_limit {LIMIT}"
    with _limited_broker(tmp_path, setting, protocol="3.1.1", max_packet_size=max_packet_size) as rig:
        rig.spool.append(_reading(n) for n in range(300))
        rig.publisher.start()
        _wait(lambda: rig.spool.depth() == 0, 30, "the readings stayed in the spool")
        said = _said(caplog, "and no [mqtt] max_packet_size")
        if max_packet_size is None:
            assert len(said) == 1 and "message_size_limit" in said[0].getMessage()
            rig.spool.append([_reading(300)])  # a batch under the limit, after them on the same connection
            _wait(lambda: "WM-00300" in _delivered(rig.subscriber), 10, "a small batch not delivered")
            assert _delivered(rig.subscriber) == {"WM-00300"}, "the broker took a batch over its limit"
        else:
            assert said == []
            _wait(lambda: len(_delivered(rig.subscriber)) == 300, 10, "readings acknowledged but not delivered")


def test_an_event_the_broker_never_takes_is_kept_and_said_once_while_the_rest_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Events go first at each connection: one over the limit ended every connection, with no
    batch in flight to learn the limit from, and what came after it was held up for good."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    with _limited_broker(tmp_path, f"message_size_limit {LIMIT}", ("aquami/v1/#",)) as rig:
        spool, publisher = rig.spool, rig.publisher
        publisher.send_durable("aquami/v1/gw-limit/events", b'{"big":"' + b"x" * 6000 + b'"}')
        publisher.send_durable("aquami/v1/gw-limit/events", b'{"small":1}')
        publisher.start()
        _wait(lambda: spool.messages_waiting() == 1, 30, "the small event held up by the large one")
        assert all(p == {"small": 1} for p in rig.subscriber.payloads("/events"))  # (again after a reconnection)
        (said,) = _said(caplog, "is larger than the broker takes; it stays in the spool")
        assert said.levelno == logging.ERROR
        connections = publisher.connections
        assert publisher.messages_too_large == 1 and connections <= 4
        spool.append(_reading(n) for n in range(20))
        _wait(lambda: spool.depth() == 0, 10, "readings held up by the event too large")
        assert publisher.connections == connections and spool.messages_waiting() == 1


@pytest.mark.parametrize(
    "setting", [f"message_size_limit {LIMIT}", f"max_packet_size {LIMIT}"], ids=["learned", "announced"]
)
def test_a_drain_at_stop_does_not_wait_for_a_reading_the_broker_never_takes_but_delivers_the_rest(
    tmp_path: Path, setting: str
) -> None:
    """Before, the drain waited until the spool was empty: its whole timeout, at every stop, for a
    reading that cannot go on this connection."""
    with _limited_broker(tmp_path, setting) as rig:
        spool, publisher = rig.spool, rig.publisher
        spool.append(
            [*(_reading(n) for n in range(10)), _reading(10, "x" * 6000), *(_reading(n) for n in range(11, 20))]
        )
        publisher.start()
        _wait(lambda: spool.depth() == 1 and publisher.connected.is_set(), 30, "the other readings not delivered")
        spool.append(_reading(n) for n in range(20, 25))  # the drain still delivers what can go
        started = time.monotonic()
        publisher.stop(drain_timeout=8.0)
        took = time.monotonic() - started
        assert took < 3.0, f"the drain waited {took:.1f} s for a reading the broker never takes"
        assert spool.depth() == 1, "the drain stopped before delivering the readings that fit"
        (kept,) = spool.sealed_batches(0, 10)
        assert [r["meter_id"] for r in kept.readings] == ["WM-00010"]
        _wait(lambda: len(_delivered(rig.subscriber)) == 24, 10, "readings acknowledged but not delivered")


@pytest.mark.parametrize(
    "setting", [f"message_size_limit {LIMIT}", f"max_packet_size {LIMIT}"], ids=["learned", "announced"]
)
def test_a_drain_at_stop_does_not_wait_for_an_event_the_broker_never_takes_but_delivers_the_rest(
    tmp_path: Path, setting: str
) -> None:
    with _limited_broker(tmp_path, setting, ("aquami/v1/#",)) as rig:
        spool, publisher = rig.spool, rig.publisher
        publisher.send_durable("aquami/v1/gw-limit/events", b'{"big":"' + b"x" * 6000 + b'"}')
        publisher.start()
        _wait(lambda: publisher.messages_too_large == 1 and publisher.connected.is_set(), 30, "not passed over")
        publisher.send_durable("aquami/v1/gw-limit/events", b'{"small":1}')  # the drain still delivers it
        spool.append(_reading(n) for n in range(5))
        started = time.monotonic()
        publisher.stop(drain_timeout=8.0)
        took = time.monotonic() - started
        assert took < 3.0, f"the drain waited {took:.1f} s for an event the broker never takes"
        assert spool.messages_waiting() == 1 and spool.depth() == 0, "the drain stopped before delivering the rest"
        _wait(lambda: rig.subscriber.payloads("/events")[-1:] == [{"small": 1}], 10, "the small event not delivered")


STATUS = "aquami/v1/gw-limit/status/health"


def _statuses(publisher: Publisher, count: int, full: bytes, smaller: bytes) -> None:
    """``count`` health statuses, as the gateway's reporter sends them (its interval shortened), each
    with readings behind it."""
    for n in range(count):
        publisher.spool.append(_reading(1000 * n + k) for k in range(5))
        publisher.send(STATUS, full, retain=True, smaller=smaller)
        _wait(lambda: publisher.connected.is_set() and publisher.spool.depth() == 0, 20, "readings held up")
        time.sleep(0.3)


def test_a_status_over_a_limit_the_broker_does_not_announce_goes_smaller_once_learned(tmp_path: Path) -> None:
    """Sent from memory, a status too large for the broker ends the connection it goes on, and is
    gone with it: two of them in a row teach the limit, and the later ones go in their smaller form,
    with no more connections ended, nor readings held up."""
    full, smaller = b'{"meters":"' + b"x" * 6000 + b'"}', b'{"meters_omitted":1}'
    with _limited_broker(tmp_path, f"message_size_limit {LIMIT}", (STATUS, "aquami/v1/+/reads")) as rig:
        rig.publisher.start()
        _wait(rig.publisher.connected.is_set, 10, "no connection")
        _statuses(rig.publisher, 8, full, smaller)
        assert rig.publisher.connections <= 3, f"{rig.publisher.connections} connections for 8 statuses"
        _wait(lambda: len(rig.subscriber.payloads(STATUS)) >= 6, 10, "the statuses in their smaller form")
        assert all(p == {"meters_omitted": 1} for p in rig.subscriber.payloads(STATUS))
        assert len(_delivered(rig.subscriber)) == 40


@pytest.mark.parametrize(
    "setting", [f"message_size_limit {LIMIT}", f"max_packet_size {LIMIT}"], ids=["learned", "announced"]
)
def test_a_status_too_large_even_in_its_smaller_form_is_said_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, setting: str
) -> None:
    """Before, each was an error: one every status interval, for as long as the gateway ran. A limit
    not announced is learned one byte under what ended two connections: the full form ends two, then
    the smaller form two more, once (before, half the full form's size was learned at once, under the
    broker's limit: what would have fit was kept)."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    full, smaller = b'{"meters":"' + b"x" * 9000 + b'"}', b'{"meters":"' + b"x" * 6000 + b'"}'
    with _limited_broker(tmp_path, setting, (STATUS, "aquami/v1/+/reads")) as rig:
        rig.publisher.start()
        _wait(rig.publisher.connected.is_set, 10, "no connection")
        _statuses(rig.publisher, 10, full, smaller)
        most = 5 if setting.startswith("message_size_limit") else 1
        assert rig.publisher.connections <= most, f"{rig.publisher.connections} connections for 10 statuses"
        said = _said(caplog, f"message on {STATUS} not sent")
        assert [r.levelno for r in said] == [logging.ERROR], [r.getMessage() for r in said]
        assert rig.publisher.messages_too_large >= 6  # each counted
        assert rig.subscriber.payloads(STATUS) == [] and len(_delivered(rig.subscriber)) == 50


def test_readings_too_large_as_many_as_the_window_do_not_hold_up_the_others(tmp_path: Path) -> None:
    """Passed over without moving on, the oldest batches, each one reading too large, filled every
    turn's window: with as many of them as the window, nothing after them was ever sent."""
    with _limited_broker(tmp_path, f"max_packet_size {LIMIT}", batch_size=1, window=2) as rig:
        rig.spool.append([*(_reading(n, "x" * 6000) for n in range(3)), *(_reading(n) for n in range(3, 13))])
        rig.publisher.start()
        _wait(lambda: rig.spool.depth() == 3, 10, "the readings that fit were held up by those too large")
        _wait(lambda: _delivered(rig.subscriber) == {f"WM-{n:05d}" for n in range(3, 13)}, 10, "not delivered")
        assert [r["meter_id"] for b in rig.spool.sealed_batches(0, 10) for r in b.readings] == [
            f"WM-{n:05d}" for n in range(3)
        ]


EVENTS = "aquami/v1/gw-limit/events"
FITS = b'{"fits":"' + b"y" * 3500 + b'"}'  # about 3,540 bytes on the wire: the broker takes it


def _learned_limits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in _said(caplog, "are kept or sent smaller, and batches sealed to")]


def test_an_event_the_broker_takes_goes_after_a_limit_is_learned_from_a_larger_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A status of 6,000 bytes ended two connections of a broker taking 4,096: half of it, about
    3,000 bytes, became the limit for everything, and an event of 3,540 bytes, which the broker
    takes, stayed in the spool (said too large) until the gateway restarted. The limit learned is
    now one byte under the size shown over it: the event goes."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    full, smaller = b'{"meters":"' + b"x" * 6000 + b'"}', b'{"meters_omitted":1}'
    with _limited_broker(tmp_path, f"message_size_limit {LIMIT}", (STATUS, EVENTS)) as rig:
        publisher = rig.publisher
        publisher.start()
        _wait(publisher.connected.is_set, 10, "no connection")
        _statuses(publisher, 4, full, smaller)
        assert len(_said(caplog, LEARNED)) == 1, "no limit learned from the statuses that ended two connections"
        connections = publisher.connections
        publisher.send_durable(EVENTS, FITS)
        _wait(lambda: rig.spool.messages_waiting() == 0, 10, "an event the broker takes was kept as too large")
        _wait(lambda: len(rig.subscriber.payloads("/events")) == 1, 10, "the event acknowledged but not delivered")
        assert publisher.messages_too_large == 0 and publisher.connections == connections


def test_a_broker_saying_a_packet_was_too_large_teaches_the_limit_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MQTT 5 broker that ends a connection with DISCONNECT 0x95 ("Packet too large") says why:
    the limit is learned from that one end, not the second. Played by a real Mosquitto over its
    max_packet_size, its CONNACK's Maximum Packet Size not shown to the gateway, as from a broker
    that does not announce it. Before, an event of 6,000 bytes ended a second connection, after a
    reconnection wait, and half its size became the limit: an event of 3,540 bytes stayed in the
    spool though the broker took it.

    Mosquitto closes the socket with the rest of the publish unread, so the connection may end in a
    reset before paho reads the DISCONNECT (CI saw it): such an end says nothing, and the test counts
    the ends that said 0x95, not the connections."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    start_session = InFlight.start_session
    monkeypatch.setattr(InFlight, "start_session", lambda inflight, properties: start_session(inflight, None))
    ends: list[tuple[bool, bool]] = []  # (said 0x95, a limit learned from it), each end in turn
    connection_ended = LearnedSizeLimit.connection_ended

    def recorded(limit: LearnedSizeLimit, unacknowledged: Iterable[int], too_large: bool = False) -> bool:
        learned = connection_ended(limit, unacknowledged, too_large)
        ends.append((too_large, learned))
        return learned

    monkeypatch.setattr(LearnedSizeLimit, "connection_ended", recorded)
    with _limited_broker(tmp_path, f"max_packet_size {LIMIT}", (EVENTS,)) as rig:
        spool, publisher = rig.spool, rig.publisher
        big = b'{"big":"' + b"x" * 6000 + b'"}'
        publisher.send_durable(EVENTS, big)
        publisher.start()
        _wait(lambda: publisher.messages_too_large == 1 and publisher.connected.is_set(), 20, "the event not kept")
        said_why = [learned for too_large, learned in ends if too_large]
        assert said_why == [True], f"ends saying 0x95, and whether each taught the limit: {said_why}"
        assert ends[-1] == (True, True) and publisher.connections == len(ends) + 1
        connections = publisher.connections
        (learned,) = _learned_limits(caplog)
        assert "DISCONNECT 0x95" in learned
        assert f"messages of {packet_size(EVENTS, big)} bytes and more are kept" in learned  # not half of it
        publisher.send_durable(EVENTS, FITS)
        _wait(lambda: spool.messages_waiting() == 1, 10, "an event the broker takes was kept as too large")
        _wait(lambda: len(rig.subscriber.payloads("/events")) == 1, 10, "the event acknowledged but not delivered")
        assert len(_said(caplog, "is larger than the broker takes; it stays in the spool")) == 1  # said once
        assert publisher.messages_too_large == 1 and publisher.connections == connections


def test_events_too_large_are_forgotten_once_they_leave_the_spool_and_each_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each event too large for the broker was remembered, to be said once, for as long as the
    gateway ran: 200 of them, of which the spool kept the 20 newest (the oldest dropped beyond its
    limit), and then all taken by a broker that takes more, left 200 ids in memory, as many as
    ever came. Now only those the spool still holds (at most twice as many, or 64), none once taken."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    with _limited_broker(tmp_path, f"max_packet_size {LIMIT}", (EVENTS,)) as rig:
        spool, publisher = rig.spool, rig.publisher
        publisher.start()
        _wait(publisher.connected.is_set, 10, "no connection")
        remembered = []
        for burst in range(20):
            for n in range(10):
                spool.add_message(EVENTS, b'{"n":%d,"big":"%s"}' % (10 * burst + n, b"x" * 6000), limit=20)
            passed_over = 10 * (burst + 1)
            _wait(lambda: publisher.messages_too_large == passed_over, 10, "events too large not passed over")  # noqa: B023
            remembered.append(len(publisher._inflight._oversized_messages))  # the ids kept in memory
        assert max(remembered) <= 64, f"ids of events too large kept: {remembered}"
        said = [r.getMessage().split()[1] for r in _said(caplog, "is larger than the broker takes")]
        assert len(said) == len(set(said)) == 200, "an event too large said twice, or not at all"
        assert spool.messages_waiting() == 20
        rig.broker.stop()  # back taking more: the 20 kept go, and are forgotten
        rig.broker.settings = [f"max_packet_size {4 * LIMIT}"]
        rig.broker.start()
        _wait(lambda: spool.messages_waiting() == 0, 20, "the events kept did not go to a broker taking them")
        _wait(lambda: not publisher._inflight._oversized_messages, 5, "events taken still remembered as too large")
        assert len(_said(caplog, "is larger than the broker takes")) == 200
