"""What an MQTT 5 broker refuses (a failure PUBACK: here Mosquitto's ACL, reason 135), through a real
Mosquitto whose ACL is changed under a running gateway (SIGHUP), the connection kept.

Before, a refused event was dropped from the session without a word or a count, and sent again
only after a reconnect: with the broker's rules fixed, it waited for a connection to break; a drain
at stop waited its whole timeout for it. A refused batch went again from just below it, and the
later batches of its window still in flight on a slow link went a second time, each counted twice
in ``acknowledged_batches``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.contracts.reads import events_topic
from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.gateway.helpers import DelayingLink, Subscriber, until
from tests.services import MosquittoBroker

pytestmark = pytest.mark.services

_ALLOWED = "topic readwrite aquami/v1/+/status\ntopic readwrite aquami/v1/+/cmd/#\n"
#: the gateway may read its events topic (the test's subscriber does), not write it
NO_EVENTS = _ALLOWED + "topic readwrite aquami/v1/+/reads\ntopic read aquami/v1/+/events\n"
NO_READS = _ALLOWED + "topic readwrite aquami/v1/+/events\ntopic read aquami/v1/+/reads\n"
EVENT = {"event": "meter_offline", "meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z"}


def _reading(n: int) -> dict[str, object]:
    return {"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)}


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _start_with_a_refused_event(tmp_path: Path, broker: MosquittoBroker) -> tuple[Publisher, Spool]:
    """A publisher whose one event the broker refuses: answered, as the batch queued after it was
    acknowledged (a broker answers a connection's PUBLISHes in order)."""
    spool = Spool(tmp_path / "s.sqlite")
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=1.0)
    publisher = Publisher(spool, "gw-acl", MqttEndpoint.parse(broker.url), options=options)
    publisher.send_durable(events_topic("gw-acl"), json.dumps(EVENT).encode())
    spool.append([_reading(1)])
    publisher.start()
    _wait(lambda: spool.depth() == 0, 10)
    assert spool.depth() == 0, "the batch sent after the event was never acknowledged"
    return publisher, spool


def test_a_refused_event_is_said_once_counted_and_sent_again_on_the_same_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    broker = MosquittoBroker(acl=NO_EVENTS)
    broker.start()
    subscriber = Subscriber(broker.url, ["aquami/v1/gw-acl/events"], client_id="event-watcher")
    publisher, spool = _start_with_a_refused_event(tmp_path, broker)
    try:
        time.sleep(3.0)  # tried again after waits of 0.5-1 s, refused each time
        assert spool.messages_waiting() == 1, "the event the broker refused left the spool"
        assert subscriber.count("/events") == 0
        broker.reload_acl(None)  # the broker's rules now allow the gateway's events
        subscriber.wait_for(lambda: subscriber.count("/events") > 0, 10, "the refused event, once allowed")
        assert publisher.connections == 1, "delivered only after a reconnect"
        _wait(lambda: spool.messages_waiting() == 0, 10)
        assert spool.messages_waiting() == 0, "the delivered event is still in the spool"
        assert subscriber.payloads("/events") == [EVENT]
        assert publisher.refused_events >= 2, "not tried again on the connection"
        said = [r.getMessage() for r in caplog.records if "refused event" in r.getMessage()]
        assert len(said) == 1, f"said at each refusal, not once: {said}"
        assert "aquami/v1/gw-acl/events" in said[0] and "reason code 135" in said[0], said[0]
        assert [r.levelno for r in caplog.records if "refused event" in r.getMessage()] == [logging.WARNING]
        took = [r.getMessage() for r in caplog.records if "broker took event" in r.getMessage()]
        assert took == [f"broker took event 1 on aquami/v1/gw-acl/events, after {publisher.refused_events} refusals"]
    finally:
        publisher.stop()
        subscriber.close()
        spool.close()
        broker.close()


def test_a_drain_at_stop_does_not_wait_for_an_event_the_broker_refuses(tmp_path: Path) -> None:
    broker = MosquittoBroker(acl=NO_EVENTS)
    broker.start()
    publisher, spool = _start_with_a_refused_event(tmp_path, broker)
    try:
        started = time.monotonic()
        publisher.stop(drain_timeout=8.0)
        took = time.monotonic() - started
        assert took < 3.0, f"the drain waited {took:.1f} s for an event the broker refuses"
        assert spool.messages_waiting() == 1, "the refused event left the spool"
    finally:
        publisher.stop()
        spool.close()
        broker.close()


def test_batches_in_flight_when_one_below_is_refused_are_not_sent_twice(tmp_path: Path) -> None:
    """Batch 1 refused; batch 2 sent half a second later and accepted, its PUBACK 1.5 s away on a
    slow link. Batch 1 goes again once its wait (0.1-0.2 s here) is over, from just below it:
    before, batch 2 went with it a second time, delivered twice and counted twice."""
    broker = MosquittoBroker(acl=NO_READS)
    broker.start()
    subscriber = Subscriber(broker.url, ["aquami/v1/gw-slow/reads"], client_id="reads-watcher")
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([_reading(1)])
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=0.2)

    async def scenario() -> Publisher:
        link = DelayingLink(broker.port, delay_s=1.5)
        await link.start()
        endpoint = MqttEndpoint.parse(link.url)
        publisher = Publisher(spool, "gw-slow", endpoint, batch_size=1, window=4, options=options)
        publisher.start()
        try:
            await until(lambda: publisher.published_batches == 1, 15)
            assert publisher.published_batches == 1, "batch 1 never went"
            await asyncio.sleep(0.2)  # the broker has refused it; the link holds its answer back
            broker.reload_acl(None)
            await asyncio.sleep(0.3)
            spool.append([_reading(2)])  # batch 2: sent now, accepted, acknowledged 1.5 s later
            await until(lambda: spool.depth() == 0, 20)
            assert spool.depth() == 0, "not delivered"
            await asyncio.sleep(2.0)  # the answer to a second send of batch 2 would be back by now
        finally:
            await asyncio.to_thread(publisher.stop)
            await link.close()
        return publisher

    try:
        publisher = asyncio.run(scenario())
        assert publisher.refused_batches >= 1, "the broker never refused batch 1"
        seqs = [b["batch_seq"] for b in subscriber.batches()]
        assert sorted(seqs) == [1, 2], f"batches the broker got: {seqs}"
        assert publisher.acknowledged_batches == 2
    finally:
        subscriber.close()
        spool.close()
        broker.close()


def test_a_refused_batch_is_said_once_per_episode_and_its_end_said_with_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A window of 4 batches refused by the ACL, again and again (waits of 0.1-0.2 s here, 60 s at
    most in the field): one warning naming the batch, topic, reason and code, every refusal counted
    in ``refused_batches``; allowed by an ACL reloaded under the connection, delivered, and one INFO
    line with the episode's count. Before, every refusal was a warning of its own."""
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    broker = MosquittoBroker(acl=NO_READS)
    broker.start()
    subscriber = Subscriber(broker.url, ["aquami/v1/gw-refused/reads"], client_id="reads-watcher")
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([_reading(n) for n in range(1, 9)])
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=0.2)
    publisher = Publisher(spool, "gw-refused", MqttEndpoint.parse(broker.url), batch_size=2, window=4, options=options)
    publisher.start()
    try:
        _wait(lambda: publisher.refused_batches >= 12, 15)  # the window refused three times over
        assert publisher.refused_batches >= 12, f"refused {publisher.refused_batches} times, not tried again"
        assert spool.depth() == 8, "a refused batch left the spool"
        assert subscriber.count("/reads") == 0
        warned = [r for r in caplog.records if "refused batch" in r.getMessage()]
        assert len(warned) == 1, f"{len(warned)} lines for {publisher.refused_batches} refusals, not one"
        assert warned[0].levelno == logging.WARNING
        said = warned[0].getMessage()
        assert said.startswith("broker refused batch 1 on aquami/v1/gw-refused/reads: Not authorized"), said
        assert "(reason code 135)" in said, said
        broker.reload_acl(None)  # the broker's rules now allow the gateway's reads
        _wait(lambda: spool.depth() == 0, 15)
        assert spool.depth() == 0, "not delivered once allowed"
        subscriber.wait_for(lambda: len(subscriber.batches()) >= 4, 10, "the four batches, once allowed")
        assert sorted(b["batch_seq"] for b in subscriber.batches()) == [1, 2, 3, 4]
        assert publisher.connections == 1, "delivered only after a reconnect"
        assert publisher.acknowledged_batches == 4
        took = [r for r in caplog.records if "broker took batch" in r.getMessage()]
        assert [r.levelno for r in took] == [logging.INFO]
        expected = f"on aquami/v1/gw-refused/reads, after {publisher.refused_batches} refusals"
        assert took[0].getMessage().startswith("broker took batch ") and took[0].getMessage().endswith(expected)
        assert len([r for r in caplog.records if "refused batch" in r.getMessage()]) == 1
    finally:
        publisher.stop()
        subscriber.close()
        spool.close()
        broker.close()
