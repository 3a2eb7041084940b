"""Test helpers for the gateway: simulated meters that count what they serve, a recording MQTT
subscriber, and configuration files for a gateway under test."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from aquami.contracts.reads import Reading, schema_errors
from firmware_protocols.modbus import load_profile
from gateway.service import Gateway
from simulators.smart_meter import SmartMeter, SteadyFlow


@dataclass
class CountingMeter(SmartMeter):
    """A simulated meter that counts the register reads it has answered."""

    served: int = 0

    def registers_at(self, at: datetime) -> list[int]:
        self.served += 1
        return super().registers_at(at)


def meters(count: int, first_unit: int = 1, prefix: str = "WM") -> list[CountingMeter]:
    profile = load_profile("smart_water_meter")
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        CountingMeter(f"{prefix}-{unit:04d}", unit, profile, SteadyFlow(start, initial_m3=10.0 * unit, rate_m3h=0.5))
        for unit in range(first_unit, first_unit + count)
    ]


class Subscriber:
    """Records every message on ``topics`` (QoS 1). ``persistent`` keeps its session on the broker,
    so what is published while it is away (the broker restarting) waits for it."""

    def __init__(self, url: str, topics: Iterable[str], client_id: str = "test-subscriber", persistent: bool = False):
        parts = urlsplit(url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=not persistent
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def payloads(self, suffix: str) -> list[Any]:
        with self._lock:
            found = [p for t, p in self.messages if t.endswith(suffix)]
        return [json.loads(p) if p[:1] in (b"{", b"[") else p.decode() for p in found]

    def count(self, suffix: str) -> int:
        """How many messages arrived on topics ending with ``suffix`` (cheap: nothing is parsed)."""
        with self._lock:
            return sum(1 for t, _ in self.messages if t.endswith(suffix))

    def batches(self) -> list[dict[str, Any]]:
        batches = self.payloads("/reads")
        for batch in batches:
            assert schema_errors(batch) == [], schema_errors(batch)
        return batches

    def keys(self) -> list[tuple[str, str]]:
        """Every (meter_id, ts) received, in arrival order, repeats included."""
        return [(r["meter_id"], r["ts"]) for b in self.payloads("/reads") for r in b["readings"]]

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config_text(
    broker_url: str,
    buses: dict[str, int],
    unit_ids: dict[str, Iterable[int]],
    spool_path: str,
    *,
    gateway_id: str = "gw-test",
    poll_interval_s: float = 0.2,
    batch_size: int = 5,
    window: int = 2,
    extra_mqtt: str = "",
    extra_bus: str = "",
    extra_top: str = "",
    extra_spool: str = "",
    timeout_s: float = 0.5,
    retries: int = 1,
) -> str:
    """A gateway file with Modbus TCP buses ``{name: port}`` and meters ``WM-{unit:04d}`` on them."""
    lines = [
        f'gateway_id = "{gateway_id}"',
        extra_top,
        "[mqtt]",
        f'url = "{broker_url}"',
        f"batch_size = {batch_size}",
        f"window = {window}",
        "reconnect_min_s = 0.2",
        "reconnect_max_s = 1.0",
        extra_mqtt,
        "[spool]",
        f'path = "{spool_path}"',
        extra_spool,
    ]
    for name, port in buses.items():
        lines += [
            "[[buses]]",
            f'name = "{name}"',
            'protocol = "modbus-tcp"',
            'host = "127.0.0.1"',
            f"port = {port}",
            f"poll_interval_s = {poll_interval_s}",
            f"timeout_s = {timeout_s}",
            f"retries = {retries}",
            "retry_backoff_s = 0.05",
            extra_bus,
        ]
    for name, units in unit_ids.items():
        for unit in units:
            lines += ["[[meters]]", f'meter_id = "WM-{unit:04d}"', f'bus = "{name}"', f"unit_id = {unit}"]
    return "\n".join(lines) + "\n"


async def run_recording(gateway: Gateway, seconds: float, taken: list[Reading]) -> Gateway:
    """Run ``gateway`` for ``seconds``, appending to ``taken`` every reading it spools, in order."""
    spool_reading = gateway.spool_reading

    async def recording(reading: Reading) -> None:
        taken.append(reading)
        await spool_reading(reading)

    gateway.spool_reading = recording  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return gateway
