"""The walking skeleton end to end: 50 simulated meters → gateway → Mosquitto → collector → TimescaleDB.

Every published reading is stored exactly once with the simulator's values, none extra; publishing
the same batches again changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from aquami.mqtt import MqttEndpoint
from collector.service import Collector, CollectorConfig
from firmware_protocols.modbus import load_profile
from gateway.config import GatewayConfig, MeterConfig, ModbusTcpBusConfig
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SmartMeter

METERS = 50
CYCLES = 3


@dataclass(frozen=True)
class HeldRegister:
    """A register that holds still while flow is reported, so every poll's true values are known."""

    volume: float
    flow: float

    def volume_m3(self, at: datetime) -> float:
        return self.volume

    def flow_m3h(self, at: datetime) -> float:
        return self.flow


def simulated_meters() -> list[SmartMeter]:
    profile = load_profile("smart_water_meter")
    meters = []
    for unit in range(1, METERS + 1):
        meter = SmartMeter(f"E2E-{unit:03d}", unit, profile, HeldRegister(100 + unit + unit / 1000, unit / 100))
        if unit % 10 == 0:
            meter.alarms.add("leak")
        meters.append(meter)
    return meters


class Recorder:
    """An independent subscriber: what the broker delivered on the reads topics."""

    def __init__(self, url: str):
        endpoint = MqttEndpoint.parse(url)
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-recorder")
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(endpoint.host, endpoint.port)
        self.client.subscribe("aquami/v1/+/reads", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "the recorder's subscription was never granted"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def started(database_url: str, broker_url: str, client_id: str, folder: Path) -> Collector:
    """A collector started and subscribed: its ready file (in ``folder``) exists once the broker has
    granted its subscriptions (until then the broker acknowledges a gateway's batches and delivers
    them to no one, and the gateway deletes them from its spool)."""
    ready_file = folder / "collector.ready"
    collector = Collector(
        CollectorConfig(database_url, MqttEndpoint.parse(broker_url), client_id=client_id, ready_file=ready_file)
    )
    collector.start()
    wait_for(ready_file.exists, 30, "the collector's subscriptions")
    return collector


def stored(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT meter_id, ts, volume_m3, flow_m3h, alarms, quality, gateway_id FROM readings ORDER BY meter_id, ts"
        ).fetchall()


async def run_gateway(make_config: Callable[[int], GatewayConfig]) -> tuple[Gateway, dict[str, Any]]:
    """Start the simulator, then a gateway configured for its port; run CYCLES poll cycles."""
    simulator = ModbusTcpSimulator(simulated_meters())
    await simulator.start()
    gateway = Gateway(make_config(simulator.port))
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, drain_timeout=10))
    while gateway.readings_spooled < METERS * CYCLES:
        await asyncio.sleep(0.05)
    status = gateway.status()
    stop.set()
    await task
    await simulator.stop()
    return gateway, status


def test_fifty_meters_end_to_end_exactly_once_and_replay_changes_nothing(
    mosquitto, migrated_database_url, tmp_path: Path
):
    recorder = Recorder(mosquitto.url)
    collector = started(migrated_database_url, mosquitto.url, "e2e-collector", tmp_path)
    try:

        def make_config(port: int) -> GatewayConfig:
            return GatewayConfig(
                gateway_id="e2e-gw",
                mqtt=MqttEndpoint.parse(mosquitto.url),
                spool_path=tmp_path / "spool.sqlite",
                batch_size=40,  # several batches per cycle
                buses=(
                    ModbusTcpBusConfig(
                        name="tcp-1",
                        host="127.0.0.1",
                        port=port,
                        meters=tuple(MeterConfig(f"E2E-{u:03d}", u) for u in range(1, METERS + 1)),
                        poll_interval_s=0.5,
                    ),
                ),
            )

        gateway, status = asyncio.run(run_gateway(make_config))
        bus = status["buses"]["tcp-1"]
        assert bus["attempts"] == bus["successes"] > 0  # no poll failed
        taken = gateway.readings_spooled
        assert taken >= METERS * CYCLES

        wait_for(
            lambda: collector.counters.snapshot()["readings_stored"] >= taken,
            30,
            "the collector to store all",
        )
        wait_for(
            lambda: sum(len(json.loads(p)["readings"]) for _, p in recorder.messages) >= taken,
            10,
            "the recorder",
        )

        published = [r for _, payload in recorder.messages for r in json.loads(payload)["readings"]]
        assert len({(r["meter_id"], r["ts"]) for r in published}) == taken
        rows = stored(migrated_database_url)
        assert len(rows) == taken  # exactly once, none extra

        truth = {m.meter_id: m for m in simulated_meters()}
        published_keys = {(r["meter_id"], datetime.fromisoformat(r["ts"])) for r in published}
        for meter_id, ts, volume, flow, alarms, quality, gateway_id in rows:
            assert (meter_id, ts) in published_keys
            meter = truth[meter_id]
            assert volume == Decimal(str(meter.model.volume_m3(ts)))
            assert flow == meter.model.flow_m3h(ts)
            assert alarms == sorted(meter.alarms)
            assert (quality, gateway_id) == ("actual", "e2e-gw")

        # Replay every batch as the broker delivered it: at-least-once delivery, exactly once in effect.
        before = collector.counters.snapshot()
        endpoint = MqttEndpoint.parse(mosquitto.url)
        replayer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-replayer")
        replayer.connect(endpoint.host, endpoint.port)
        replayer.loop_start()
        delivered = list(recorder.messages)  # the recorder hears the replay too: replay what it had
        for topic, payload in delivered:
            replayer.publish(topic, payload, qos=1).wait_for_publish(5)
        replayer.loop_stop()
        replayer.disconnect()
        wait_for(
            lambda: collector.counters.snapshot()["readings_received"] >= before["readings_received"] + len(published),
            30,
            "the replay to be processed",
        )
        assert stored(migrated_database_url) == rows
        after = collector.counters.snapshot()
        assert after["duplicates"] - before["duplicates"] == len(published)
        assert after["dead_letters"] == 0
    finally:
        collector.stop()
        recorder.close()


def test_a_malformed_payload_is_counted_dead_lettered_and_the_collector_goes_on(
    mosquitto, migrated_database_url, tmp_path: Path
):
    collector = started(migrated_database_url, mosquitto.url, "e2e-bad", tmp_path)
    try:
        endpoint = MqttEndpoint.parse(mosquitto.url)
        sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-bad-sender")
        connected = threading.Event()
        sender.on_connect = lambda *args: connected.set()
        sender.connect(endpoint.host, endpoint.port)
        sender.loop_start()
        assert connected.wait(10), "the sender never connected"
        sender.publish("aquami/v1/gw-x/reads", b"{not json", qos=1).wait_for_publish(5)
        good = {
            "gateway_id": "gw-x",
            "batch_seq": 2,
            "sent_at": "2026-11-23T08:00:00Z",
            "readings": [{"meter_id": "OK-1", "ts": "2026-11-23T07:00:00Z", "volume_m3": 5.5}],
        }
        sender.publish("aquami/v1/gw-x/reads", json.dumps(good).encode(), qos=1).wait_for_publish(5)
        sender.loop_stop()
        sender.disconnect()
        wait_for(lambda: collector.counters.snapshot()["readings_stored"] == 1, 20, "the good batch")
        assert collector.counters.snapshot()["dead_letters"] == 1
        with psycopg.connect(migrated_database_url) as conn:
            dead_letter = conn.execute("SELECT topic, reason, payload FROM dead_letters").fetchone()
            assert dead_letter is not None
            topic, reason, payload = dead_letter
            assert (topic, bytes(payload)) == ("aquami/v1/gw-x/reads", b"{not json")
            assert "not JSON" in reason
            assert conn.execute("SELECT meter_id, volume_m3 FROM readings").fetchall() == [("OK-1", Decimal("5.5"))]
    finally:
        collector.stop()
    assert not any(t.name == "collector-writer" and t.is_alive() for t in threading.enumerate())
