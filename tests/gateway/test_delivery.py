"""Delivery through a real Mosquitto: nothing lost across a broker outage or a gateway SIGKILL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from aquami.contracts.reads import Reading, events_topic
from aquami.mqtt import MqttEndpoint
from aquami.ports import free_port
from gateway.config import MqttOptions, parse_config_text
from gateway.health import Health
from gateway.publisher import Publisher
from gateway.service import Gateway
from gateway.spool import Spool
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import (
    AckStallingLink,
    MqttLink,
    SlowConnackLink,
    Subscriber,
    config_text,
    meters,
    outage_broker,
    record_readings,
    running,
    until,
)
from tests.services import MosquittoBroker
from tests.takeover_broker import TakeoverBroker

pytestmark = pytest.mark.services
AQUAMI = str(Path(sys.executable).with_name("aquami"))


def assert_in_order_without_gaps(subscriber: Subscriber) -> None:
    """Batches arrive in batch_seq order (a repeat may follow its first arrival), none missing."""
    seqs = [b["batch_seq"] for b in subscriber.batches()]
    firsts = list(dict.fromkeys(seqs))
    assert firsts == sorted(firsts), f"batches out of order: {seqs}"
    assert firsts == list(range(firsts[0], firsts[0] + len(firsts))), f"a batch is missing: {firsts}"


def test_broker_outage_delays_readings_but_loses_none(tmp_path: Path) -> None:
    fleet = meters(5)
    taken: list[Reading] = []
    outage: dict[str, float] = {}

    async def scenario(broker: MosquittoBroker) -> Gateway:
        simulator = ModbusTcpSimulator(fleet)
        await simulator.start()
        text = config_text(broker.url, {"tcp-1": simulator.port}, {"tcp-1": range(1, 6)}, str(tmp_path / "s.sqlite"))
        gateway = Gateway(parse_config_text(text))
        record_readings(gateway, taken)
        async with running(gateway, drain_timeout=10):
            await until(lambda: gateway.publisher.acknowledged_batches > 0, 30)  # (1.5 s may not do, under load)
            assert gateway.publisher.acknowledged_batches > 0
            outage["start"] = time.monotonic()
            await asyncio.to_thread(broker.stop)
            before = len(taken)
            await asyncio.sleep(3.0)
            await until(lambda: len(taken) - before >= 20, 30)  # (a loaded machine may poll less in 3 s)
            outage["taken"] = len(taken) - before
            outage["depth"] = gateway.spool.depth()
            await asyncio.to_thread(broker.start)
            await until(lambda: gateway.spool.depth() == 0, 30)
        await simulator.stop()
        return gateway

    with outage_broker(["aquami/v1/gw-test/reads"], "outage-sub") as (broker, subscriber):
        gateway = asyncio.run(scenario(broker))
        expected = {(r.to_json()["meter_id"], r.to_json()["ts"]) for r in taken}
        subscriber.wait_for(lambda: expected <= set(subscriber.keys()), 20, "every reading taken")
    assert outage["taken"] >= 20, "polling went on during the outage"
    assert outage["depth"] >= outage["taken"], "readings waited in the spool"
    received = subscriber.keys()
    assert set(received) == expected
    assert_in_order_without_gaps(subscriber)
    for meter in fleet:  # each meter's readings arrive in time order
        # Compared as instants: the contract's RFC 3339 strings drop a zero fraction, so they don't sort as text.
        own = (datetime.fromisoformat(ts) for meter_id, ts in received if meter_id == meter.meter_id)
        times = list(dict.fromkeys(own))
        assert times == sorted(times)
    assert gateway.publisher.connections >= 2 and gateway.spool_full is False


def _spool_keys(path: Path) -> set[tuple[str, str]]:
    import json

    with sqlite3.connect(path) as db:
        return {
            (b["meter_id"], b["ts"]) for (body,) in db.execute("SELECT body FROM readings") for b in [json.loads(body)]
        }


def _spool_depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM readings").fetchone()[0])


def _backlog(path: Path) -> int:
    """The spool's depth while the gateway starts: none before it has created its spool."""
    if not path.exists():  # connecting would create it
        return 0
    try:
        return _spool_depth(path)
    except sqlite3.OperationalError:  # created, its tables not yet
        return 0


def _oldest_spooled_id(path: Path) -> int:
    """The spool's oldest row: it moves on only when the broker has acknowledged a batch."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT coalesce(min(id), 0) FROM readings").fetchone()[0])


def test_sigkill_mid_publish_loses_nothing_and_repeats_only_unacknowledged(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite"
    fleet = meters(10)
    config = tmp_path / "gw.toml"

    async def scenario(broker: MosquittoBroker, log: BinaryIO) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        def start(broker_url: str) -> subprocess.Popen[bytes]:
            config.write_text(
                config_text(
                    broker_url,
                    {"tcp-1": simulator.port},
                    {"tcp-1": range(1, 11)},
                    str(spool_path),
                    gateway_id="gw-kill",
                    poll_interval_s=0.05,
                    batch_size=2,
                    window=4,
                )
            )
            return subprocess.Popen([AQUAMI, "gateway", "run", str(config)], stdout=log, stderr=subprocess.STDOUT)

        simulator = ModbusTcpSimulator(fleet)
        await simulator.start()
        # The gateway reaches the broker through a link that passes five acknowledgements and no
        # more: a backlog first (the link not there yet), then five batches acknowledged, then
        # batches the broker has and the gateway does not know it has. Waiting on the spool and
        # the link, not on time or the subscriber, the kill lands there however loaded the machine
        # (a kill timed by the subscriber's count let a late subscriber see the backlog drained).
        link = AckStallingLink(broker.port, acks=5)
        first = start(link.url)
        try:
            await until(lambda: _backlog(spool_path) >= 60 or first.poll() is not None, 30)
            assert first.poll() is None and _backlog(spool_path) >= 60, "a backlog in the spool"
            spooled_before = _spool_keys(spool_path)
            oldest = _oldest_spooled_id(spool_path)
            await link.start()

            def stalled() -> bool:  # some batches acknowledged, then an acknowledgement dropped
                return link.dropped > 0 and _oldest_spooled_id(spool_path) > oldest

            await until(lambda: stalled() or first.poll() is not None, 30)
            assert first.poll() is None and stalled(), "acknowledgements, then one the link dropped"
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
            await link.close()
        left_in_spool = _spool_keys(spool_path)
        acknowledged_before_kill = spooled_before - left_in_spool
        second = start(broker.url)
        try:
            # the restarted gateway delivers what was left; a fixed 2 s sent SIGTERM, on a loaded
            # machine, before it had even connected (or installed its handler)
            await until(lambda: not (_spool_keys(spool_path) & left_in_spool) or second.poll() is not None, 30)
            assert second.poll() is None, "the restarted gateway died"
            second.send_signal(signal.SIGTERM)  # a clean stop drains the spool (up to 2 s)
            await asyncio.to_thread(second.wait, 20)
        finally:
            if second.poll() is None:
                second.kill()
        await simulator.stop()
        return left_in_spool, acknowledged_before_kill

    with (
        outage_broker(["aquami/v1/gw-kill/reads"], "kill-sub") as (broker, subscriber),
        (tmp_path / "gateway.log").open("wb") as log,
    ):
        left_in_spool, acknowledged_before_kill = asyncio.run(scenario(broker, log))
        sent = left_in_spool | acknowledged_before_kill
        subscriber.wait_for(lambda: sent <= set(subscriber.keys()), 20, "the spool's readings")
    received = subscriber.keys()
    counts = Counter(received)
    repeated = {key for key, n in counts.items() if n > 1}
    assert len(left_in_spool) >= 40, "the kill left unacknowledged readings behind"
    assert 0 < len(acknowledged_before_kill) <= 5 * 2, "the kill came after the link's five acknowledgements"
    assert sent <= set(received), "all of it arrived"
    # the batches whose acknowledgement the link dropped reached the broker: sent again after the
    # restart, they arrive twice, and nothing else does
    assert repeated and repeated <= left_in_spool, "only readings not yet acknowledged at the kill come twice"
    assert _spool_depth(spool_path) == 0
    assert_in_order_without_gaps(subscriber)
    served = sum(m.served for m in fleet)
    # Each meter has at most one poll under way: a kill (and the final stop) can cost at most that
    # one answer per meter, read from the wire but not yet on disk; nothing once it is on disk.
    assert served - len(counts) <= 2 * len(fleet), (served, len(counts))


def test_mqtt5_with_mosquitto(tmp_path: Path, mosquitto) -> None:
    subscriber = Subscriber(mosquitto.url, ["aquami/v1/gw-v5/#"], client_id="v5-sub")

    async def scenario() -> Gateway:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(
            mosquitto.url, {"b": simulator.port}, {"b": [1, 2]}, str(tmp_path / "s.sqlite"), gateway_id="gw-v5"
        )
        gateway = Gateway(parse_config_text(text))
        async with running(gateway):
            await asyncio.to_thread(subscriber.wait_for, lambda: len(subscriber.batches()) >= 2, 20, "two batches")
        await simulator.stop()
        return gateway

    try:
        gateway = asyncio.run(scenario())
        subscriber.wait_for(lambda: "offline" in subscriber.payloads("/status"), 10, "status offline")
    finally:
        subscriber.close()
    assert gateway.publisher.protocol_in_use == "5"
    assert subscriber.payloads("/status")[:1] == ["online"]


def test_falls_back_to_mqtt311_for_a_broker_without_mqtt5(tmp_path: Path) -> None:
    from aquami.embedded import EmbeddedBroker
    from aquami.ports import free_port

    async def scenario() -> tuple[Gateway, int]:
        broker = EmbeddedBroker(free_port())  # amqtt: MQTT 3.1.1 only
        await broker.start()
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(broker.url, {"b": simulator.port}, {"b": [1, 2]}, str(tmp_path / "s.sqlite"))
        gateway = Gateway(parse_config_text(text))
        async with running(gateway):
            await until(lambda: gateway.publisher.acknowledged_batches >= 2, 30)
            acknowledged = gateway.publisher.acknowledged_batches
        await simulator.stop()
        await broker.stop()
        return gateway, acknowledged

    gateway, acknowledged = asyncio.run(scenario())
    assert gateway.publisher.protocol_in_use == "3.1.1" and acknowledged >= 2


class FailingDiskSpool(Spool):
    """A spool whose deletes fail while ``failing`` is set: a full or failing disk (a DELETE has to
    write the WAL too)."""

    failing = False

    def acknowledge_many(self, batch_seqs: list[int]) -> int:
        if self.failing and batch_seqs:
            raise sqlite3.OperationalError("database or disk is full")
        return super().acknowledge_many(batch_seqs)

    def delete_messages(self, ids: list[int]) -> None:
        if self.failing and ids:
            raise sqlite3.OperationalError("database or disk is full")
        super().delete_messages(ids)


def test_a_failing_disk_does_not_end_the_publisher(tmp_path: Path, mosquitto) -> None:
    """Acknowledgements that cannot be written while the disk fails leave their batches and events in
    the spool, to be sent again; once the disk is back, the publisher empties the spool."""
    spool = FailingDiskSpool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(20)])
    for n in range(20):
        spool.add_message("aquami/v1/gw-disk/events", b'{"event":"test","n":%d}' % n)
    spool.failing = True
    options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
    publisher = Publisher(spool, "gw-disk", MqttEndpoint.parse(mosquitto.url), batch_size=2, window=2, options=options)
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while publisher._spool_trouble.failures < 5 and time.monotonic() < deadline:  # tried each second
            time.sleep(0.05)
        assert publisher._spool_trouble.failures >= 5
        spool.failing = False  # the disk is back
        deadline = time.monotonic() + 10
        while (spool.depth() or spool.messages_waiting()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher._thread.is_alive(), "the publisher's thread ended"
        assert (spool.depth(), spool.messages_waiting()) == (0, 0)
    finally:
        publisher.stop()
        spool.close()


def test_a_spool_that_filled_its_space_in_an_outage_is_delivered_once_the_broker_is_back(
    tmp_path: Path, mosquitto
) -> None:
    """An outage long enough fills the spool's disk. Sealing batches is a write too: when the spool
    took readings until the disk was full, every seal failed ("database or disk is full"), the
    publisher threw each session away, and nothing was delivered or deleted again, broker back or
    not. Now the spool refuses readings while less than its reserve is left, so delivery always has
    room to seal and delete, and frees the space for new readings.

    The disk is simulated, not mounted: ``PRAGMA max_page_count`` caps the database at 20 MiB
    (16 MiB of reserve and 4 MiB to fill), and SQLite then raises SQLITE_FULL just as on a full
    disk. The spool's room counts that cap as it counts the filesystem's free space."""
    spool = Spool(tmp_path / "s.sqlite")
    page_size = spool._db.execute("PRAGMA page_size").fetchone()[0]
    spool._db.execute(f"PRAGMA max_page_count = {20 * 2**20 // page_size}")
    pad = "x" * 150  # readings about as long as a Modbus meter's
    refused: Exception | None = None
    n, chunk = 0, 500
    while refused is None:  # the outage: polls go on until the spool takes no more, to its last page
        try:
            spool.append(
                [{"meter_id": f"WM-{i % 300}", "ts": f"{i}", "volume_m3": 1.0, "pad": pad} for i in range(n, n + chunk)]
            )
            n += chunk
        except Exception as error:
            if chunk == 1:
                refused = error
            chunk = 1  # (the gateway commits what has arrived: a few readings as well as hundreds)
    held = spool.depth()
    assert held > 0
    publisher = Publisher(spool, "gw-full", MqttEndpoint.parse(mosquitto.url), batch_size=500, window=8)
    publisher.start()
    try:
        deadline = time.monotonic() + 60
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spool.depth() == 0, f"{spool.depth()} of {held} readings still in the spool"
        assert publisher.acknowledged_batches >= -(-held // 500)
        assert "spool full" in str(refused)
        assert spool.append([{"meter_id": "WM-1", "ts": "later", "volume_m3": 2.0}]).stored == 1  # room again
    finally:
        publisher.stop()
        spool.close()


@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_a_broker_slow_to_accept_is_waited_for(tmp_path: Path, mosquitto, protocol: str) -> None:
    """A CONNACK that takes 4 s still opens the session: the gateway must not hang up on a broker
    that answers, only slowly, and try again forever."""

    async def scenario() -> tuple[int, int]:
        link = SlowConnackLink(mosquitto.port, delay_s=4.0)
        await link.start()
        spool = Spool(tmp_path / "s.sqlite")
        spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
        options = MqttOptions(protocol=protocol, reconnect_min_s=0.2, reconnect_max_s=1.0)  # type: ignore[arg-type]
        publisher = Publisher(spool, "gw-slow", MqttEndpoint.parse(link.url), options=options)
        publisher.start()
        try:
            await until(lambda: spool.depth() == 0, 20)
        finally:
            await asyncio.to_thread(publisher.stop)
            await link.close()
            depth = spool.depth()
            spool.close()
        return publisher.connections, depth

    connections, depth = asyncio.run(scenario())
    assert connections >= 1, "never connected"
    assert depth == 0


def test_a_batch_the_broker_refuses_waits_longer_each_time_and_is_delivered_once_allowed(tmp_path: Path) -> None:
    """MQTT 5: a broker whose rules refuse the gateway's reads (here an ACL without its reads topic)
    answers each batch with a failure PUBACK. The batches stay in the spool and are sent again
    after a growing wait, not on every loop turn (20 times a second, each logged, for as long as
    the rules stay); once the broker allows them, they are delivered."""
    acl = "topic readwrite aquami/v1/+/status\ntopic readwrite aquami/v1/+/events\ntopic readwrite aquami/v1/+/cmd/#\n"
    broker = MosquittoBroker(acl=acl)
    broker.start()
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(4)])
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=2.0)
    publisher = Publisher(spool, "gw-acl", MqttEndpoint.parse(broker.url), batch_size=2, window=2, options=options)
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while publisher.refused_batches == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.refused_batches > 0, "the broker never refused a batch"
        sent_before = publisher.published_batches
        time.sleep(3.0)
        # waits of 0.5-1, 1-2 and 1-2 s at most: a handful of sends, where every turn resent them before
        assert publisher.published_batches - sent_before <= 3 * publisher.window
        assert spool.depth() == 4, "a refused batch left the spool"
        broker.stop()
        broker._acl = None  # the broker's rules now allow the gateway's reads
        broker.start()
        deadline = time.monotonic() + 20
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.depth() == 0
    finally:
        publisher.stop()
        spool.close()
        broker.stop()


def test_an_event_the_broker_refuses_stays_in_the_spool_and_is_delivered_once_allowed(tmp_path: Path) -> None:
    """MQTT 5: a broker whose rules refuse the gateway's events (here an ACL letting it read its
    events topic but not write it) answers a meter_offline event with a failure PUBACK. The event is
    not acknowledged: it stays in the spool, and is delivered once the broker allows it. A batch
    queued after it is accepted, so its acknowledgement tells that the event's answer came back."""
    acl = (
        "topic readwrite aquami/v1/+/status\ntopic readwrite aquami/v1/+/reads\n"
        "topic readwrite aquami/v1/+/cmd/#\ntopic read aquami/v1/+/events\n"
    )
    broker = MosquittoBroker(acl=acl, persistence=True)
    broker.start()
    spool = Spool(tmp_path / "s.sqlite")
    health = Health("gw-acl", offline_after=1)
    health.track("b", ["WM-1"])
    event = health.poll_done("WM-1", False, at=datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    assert event is not None and event["event"] == "meter_offline"
    payload = json.dumps(event, separators=(",", ":")).encode()
    # kept for it by the broker across the restart below: nothing it is sent is missed
    subscriber = Subscriber(broker.url, ["aquami/v1/gw-acl/events"], client_id="event-watcher", persistent=True)
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=2.0)
    publisher = Publisher(spool, "gw-acl", MqttEndpoint.parse(broker.url), options=options)
    publisher.send_durable(events_topic("gw-acl"), payload)
    spool.append([{"meter_id": "WM-2", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.depth() == 0, "the batch sent after the event was never acknowledged"
        time.sleep(0.5)
        assert spool.messages_waiting() == 1, "the event the broker refused left the spool"
        assert subscriber.count("/events") == 0
        broker.stop()
        broker._acl = None  # the broker's rules now allow the gateway's events
        broker.start()
        subscriber.wait_for(lambda: subscriber.count("/events") > 0, 20, "the refused event, once allowed")
        deadline = time.monotonic() + 10
        while spool.messages_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.messages_waiting() == 0
        assert subscriber.payloads("/events") == [event]
    finally:
        publisher.stop()
        subscriber.close()
        spool.close()
        broker.close()


@pytest.mark.parametrize(("protocol", "configured"), [("5", None), ("3.1.1", 4096)])
def test_a_batch_larger_than_the_broker_takes_is_resealed_smaller_and_delivered(
    tmp_path: Path, protocol: str, configured: int | None
) -> None:
    """A broker disconnects a client whose packet exceeds its maximum (EMQX: 1 MB by default; AWS IoT
    Core: 128 KB). The oldest sealed batch went first after every reconnect, so one batch too large
    stopped all delivery for good. MQTT 5 brokers announce their maximum in CONNACK; for MQTT 3.1.1
    it is ``max_packet_size`` in the gateway's config. A batch over it is resealed into batches that
    fit (new, higher ``batch_seq``s), and later batches are sealed to fit."""
    broker = MosquittoBroker(settings=["max_packet_size 4096"])
    broker.start()
    spool = Spool(tmp_path / "s.sqlite")
    readings = [
        {"meter_id": f"WM-{n:05d}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n), "flow_m3h": 0.125}
        for n in range(300)
    ]
    spool.append(readings[:200])
    spool.seal_many(100, 2)  # sealed before the gateway knew: about 8 KB each
    spool.append(readings[200:])
    subscriber = Subscriber(broker.url, ["aquami/v1/+/reads"])
    options = MqttOptions(protocol=protocol, reconnect_min_s=0.05, reconnect_max_s=0.5, max_packet_size=configured)  # type: ignore[arg-type]
    publisher = Publisher(spool, "gw-big", MqttEndpoint.parse(broker.url), batch_size=100, options=options)
    publisher.start()
    try:
        deadline = time.monotonic() + 20
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.depth() == 0, "a batch too large for the broker held up delivery"
        deadline = time.monotonic() + 5
        while len({r["meter_id"] for b in subscriber.batches() for r in b["readings"]}) < 300:
            assert time.monotonic() < deadline, "readings acknowledged but not delivered"
            time.sleep(0.05)
        assert publisher.resealed_batches >= 2
        assert all(len(payload) < 4096 for topic, payload in subscriber.messages if topic.endswith("/reads"))
        assert publisher.connections == 1, "the broker disconnected the gateway for a packet too large"
    finally:
        publisher.stop()
        subscriber.close()
        spool.close()
        broker.stop()


def test_statuses_replies_and_events_larger_than_the_broker_takes_do_not_cost_the_connection(tmp_path: Path) -> None:
    """Only batches were sized against the broker's limit: a gateway's retained health status (about
    110 bytes a meter) over it had the broker close the connection at every status interval, with
    'offline' published by the will each time and the status never delivered. A status goes in its
    smaller form; a reply with none is dropped and counted; an event stays in the spool."""
    broker = MosquittoBroker(settings=["max_packet_size 4096"])
    broker.start()
    spool = Spool(tmp_path / "s.sqlite")
    subscriber = Subscriber(broker.url, ["aquami/v1/gw-big/#"])
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=0.5)
    publisher = Publisher(spool, "gw-big", MqttEndpoint.parse(broker.url), options=options)
    publisher.start()
    try:
        assert publisher.connected.wait(10)
        big, small = b'{"meters":"' + b"x" * 8000 + b'"}', b'{"meters":{},"meters_omitted":2000}'
        publisher.send("aquami/v1/gw-big/status/health", big, retain=True, smaller=small)
        publisher.send("aquami/v1/gw-big/cmd/scan/reply", big)
        publisher.send_durable("aquami/v1/gw-big/events", big)
        spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
        deadline = time.monotonic() + 10
        while spool.depth() or not any(t.endswith("/status/health") for t, _ in subscriber.messages):
            assert time.monotonic() < deadline, "status or readings not delivered"
            time.sleep(0.05)
        assert [p for t, p in subscriber.messages if t.endswith("/status/health")] == [small]
        assert not any(t.endswith("/reply") or t.endswith("/events") for t, _ in subscriber.messages)
        assert publisher.messages_too_large == 2 and spool.messages_waiting() == 1  # the event is kept
        assert publisher.connections == 1, "the broker disconnected the gateway for a packet too large"
    finally:
        publisher.stop()
        subscriber.close()
        spool.close()
        broker.stop()


def test_the_smaller_health_status_lists_only_the_meters_that_fail(tmp_path: Path) -> None:
    text = config_text(f"mqtt://127.0.0.1:{free_port()}", {"b": free_port()}, {"b": [1, 2, 3]}, str(tmp_path / "s"))
    gateway = Gateway(parse_config_text(text))
    gateway.health.track("b", ["WM-0001", "WM-0002", "WM-0003"])
    for meter_id, ok in (("WM-0001", True), ("WM-0002", False), ("WM-0003", True)):
        gateway.health.poll_done(meter_id, ok)
    gateway.publish_status()
    (status,) = gateway.publisher._outbox
    assert status.smaller is not None
    full, smaller = json.loads(status.payload), json.loads(status.smaller)
    assert sorted(full["meters"]) == ["WM-0001", "WM-0002", "WM-0003"] and "meters_omitted" not in full
    assert list(smaller["meters"]) == ["WM-0002"] and smaller["meters_omitted"] == 2
    assert {k: v for k, v in smaller.items() if k not in ("meters", "meters_omitted")} == {
        k: v for k, v in full.items() if k != "meters"
    }
    gateway.spool.close()


def _reconnected(link_to: Callable[[int], MqttLink], broker_port: int, tmp_path: Path) -> tuple[str | None, str | None]:
    """Protocol "auto" through a link to the broker: the protocol of the first connection, and of the
    next one after the link is cut."""

    async def scenario() -> tuple[str | None, str | None]:
        link = link_to(broker_port)
        await link.start()
        spool = Spool(tmp_path / "s.sqlite")
        spool.append([{"meter_id": "WM-1", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
        options = MqttOptions(protocol="auto", reconnect_min_s=0.2, reconnect_max_s=1.0)
        publisher = Publisher(spool, "gw-auto", MqttEndpoint.parse(link.url), options=options)
        publisher.start()
        try:
            await until(lambda: spool.depth() == 0, 30)
            first = publisher.protocol_in_use
            link.drop()
            await until(lambda: publisher.connections >= 2, 60)
            return first, publisher.protocol_in_use
        finally:
            await asyncio.to_thread(publisher.stop)
            await link.close()
            spool.close()

    return asyncio.run(scenario())


def test_auto_asks_in_mqtt5_again_where_the_broker_was_slow_not_without_it(tmp_path: Path, mosquitto) -> None:
    """An MQTT 5 CONNECT unanswered for 3 s falls back to 3.1.1 (some 3.1.1 brokers say nothing to
    MQTT 5). A broker that answers the 3.1.1 CONNECT as slowly was only slow: it stayed MQTT 3.1.1
    until the gateway restarted, and 3.1.1 has no refusals (a broker's ACL acknowledges what it
    drops, so the spool deletes it). The next connection asks in MQTT 5 again, and waits."""
    first, second = _reconnected(lambda port: SlowConnackLink(port, delay_s=4.0), mosquitto.port, tmp_path)
    assert (first, second) == ("3.1.1", "5")


def test_auto_keeps_mqtt311_for_a_broker_silent_to_mqtt5(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """amqtt answers a 3.1.1 CONNECT at once and an MQTT 5 one never: after a reconnect the gateway
    does not spend another 3 s asking in MQTT 5."""
    from aquami.embedded import EmbeddedBroker
    from aquami.ports import free_port

    broker = EmbeddedBroker(free_port())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(10)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.publisher"):
            first, second = _reconnected(MqttLink, broker.port, tmp_path)
    finally:
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert (first, second) == ("3.1.1", "3.1.1")
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.publisher"]  # not the broker's, paho's
    assert sum("does not speak MQTT 5" in message for message in said) == 1
    # fallen back to 3.1.1, the gateway says once that a publish the broker refuses would be lost
    lost = [message for message in said if "is acknowledged all the same" in message]
    assert len(lost) == 1 and "(the broker did not take MQTT 5)" in lost[0]


def test_two_gateways_with_one_gateway_id_back_off_and_say_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The broker lets one client at a time use a client id: a second gateway configured with the
    same gateway_id takes the session over, and the first, reconnecting, takes it back. The waits
    were reset at every CONNACK, so the two took turns every fraction of a second for good; a
    connection that lasted under 30 s now leaves them growing, and the gateways say what is wrong
    (the broker, as Mosquitto from 2.0.15 does, says "Session taken over": tests/takeover_broker.py).
    Both still deliver."""
    broker = MosquittoBroker()
    broker.start()
    takeover = TakeoverBroker(broker.port)
    spools = [Spool(tmp_path / f"s{n}.sqlite") for n in range(2)]
    for n, spool in enumerate(spools):
        spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0}])
    options = MqttOptions(protocol="5", reconnect_min_s=0.05, reconnect_max_s=2.0)
    twins = [Publisher(spool, "gw-twin", MqttEndpoint.parse(takeover.url), options=options) for spool in spools]
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.publisher"):
            started = time.monotonic()
            for twin in twins:
                twin.start()
            time.sleep(6.0)  # the turns to count; then what is asserted below, waited for if late
            deadline = started + 30
            while time.monotonic() < deadline and not (
                max(twin.short_connections for twin in twins) >= 3 and [s.depth() for s in spools] == [0, 0]
            ):
                time.sleep(0.2)
            ran_s = time.monotonic() - started
        connections = sum(twin.connections for twin in twins)
        # waits of 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2 s, each halved to doubled by jitter, and the
        # turn itself: about a dozen in 6 s, against about 60 when every CONNACK reset them (and 2 s
        # waits at most: under 2 a second after that)
        assert connections <= 24 + 2 * (ran_s - 6.0), (connections, ran_s)
        assert [spool.depth() for spool in spools] == [0, 0]
        assert max(twin.short_connections for twin in twins) >= 3  # health's short_connections
        assert any("another gateway is configured with gateway_id 'gw-twin'" in r.getMessage() for r in caplog.records)
    finally:
        for twin in twins:
            twin.stop()
        for spool in spools:
            spool.close()
        takeover.close()
        broker.stop()
