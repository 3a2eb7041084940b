"""Gateway benchmarks: delivery throughput against a bare paho loop, and memory with 2,000 meters.

Run ``python -m benchmarks.bench_gateway`` (Mosquitto must be installed: ``scripts/test-deps``).
Absolute numbers depend on the machine; each figure is printed next to a baseline measured in the
same run, and the ratio is what to compare between runs:

1. delivery: readings/s from "reading taken" to "broker acknowledged", through the gateway's spool
   (SQLite WAL, fsync per commit) and publisher, against a bare paho loop publishing the very same
   batch payloads at QoS 1 and waiting for every PUBACK (no durability at all);
2. polling: readings/s the gateway's scheduler takes from a Modbus TCP simulator against a bare
   pymodbus loop reading the same registers;
3. memory: the resident set of ``aquami gateway run`` with 2,000 configured meters polling (goal
   at most 150 MB), against a bare interpreter that has imported the same modules.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from aquami.contracts.reads import ReadsBatch, reads_topic
from aquami.mqtt import MqttEndpoint
from firmware_protocols.modbus import load_profile
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SmartMeter, SteadyFlow
from tests.services import MosquittoBroker

READINGS = 20_000
BATCH = 500
WINDOW = 8
MEMORY_METERS = 2_000
AQUAMI = str(Path(sys.executable).with_name("aquami"))


def _readings(n: int) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "meter_id": f"WM-{i % 2000:05d}",
            "ts": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "volume_m3": 100 + i * 0.001,
            "flow_m3h": 0.5,
            "source": {"protocol": "modbus-tcp", "bus": "tcp-1", "address": i % 247 + 1},
        }
        for i in range(n)
    ]


def bench_gateway_delivery(broker: MosquittoBroker, readings: list[dict[str, Any]], workdir: Path) -> float:
    """Readings/s: spool in groups of 100 (as polls arrive), publish, wait until the spool is empty."""
    spool = Spool(workdir / "bench-spool.sqlite")
    publisher = Publisher(
        spool, "bench-gw", MqttEndpoint.parse(broker.url), batch_size=BATCH, window=WINDOW, options=MqttOptions()
    )
    publisher.start()
    if not publisher.connected.wait(15):
        raise RuntimeError("the publisher did not connect")
    started = time.perf_counter()
    for i in range(0, len(readings), 100):
        spool.append(readings[i : i + 100])
    while spool.depth() > 0:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    publisher.stop()
    spool.close()
    return len(readings) / elapsed


def bench_spool_floor(readings: list[dict[str, Any]], workdir: Path) -> float:
    """Readings/s of the spool appends alone (same groups of 100, one fsync'd commit each)."""
    spool = Spool(workdir / "floor-spool.sqlite")
    started = time.perf_counter()
    for i in range(0, len(readings), 100):
        spool.append(readings[i : i + 100])
    elapsed = time.perf_counter() - started
    spool.close()
    return len(readings) / elapsed


def bench_bare_paho(broker: MosquittoBroker, readings: list[dict[str, Any]]) -> float:
    """Readings/s: the same batch payloads, QoS 1, paho's own loop thread, until every PUBACK."""
    acked = threading.Semaphore(0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = lambda *args: acked.release()
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    connected.wait(10)
    now = datetime.now(UTC)
    payloads = [
        ReadsBatch("bench-bare", seq, now, readings[i : i + BATCH]).encode()
        for seq, i in enumerate(range(0, len(readings), BATCH), start=1)
    ]
    started = time.perf_counter()
    for payload in payloads:
        client.publish(reads_topic("bench-bare"), payload, qos=1)
    for _ in payloads:
        acked.acquire()
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return len(readings) / elapsed


def _meters(count: int, first_unit: int = 1) -> list[SmartMeter]:
    profile = load_profile("smart_water_meter")
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        SmartMeter(f"WM-{unit:05d}", unit, profile, SteadyFlow(start, 10.0, 0.5))
        for unit in range(first_unit, first_unit + count)
    ]


async def _bench_polling(seconds: float = 4.0) -> tuple[float, float]:
    """(gateway scheduler readings/s, bare pymodbus readings/s) against one 50-meter simulator."""
    from pymodbus.client import AsyncModbusTcpClient

    from gateway.config import MeterConfig, ModbusTcpBusConfig
    from gateway.modbus_tcp import ModbusTcpTransport
    from gateway.profiles import ProfileBook
    from gateway.scheduler import BusScheduler

    meters = _meters(50)
    simulator = ModbusTcpSimulator(meters)
    await simulator.start()
    bus = ModbusTcpBusConfig(
        "bench", "127.0.0.1", simulator.port, tuple(MeterConfig(m.meter_id, m.unit_id) for m in meters), 0.02
    )
    count = 0

    async def taken(reading: Any) -> None:
        nonlocal count
        count += 1

    scheduler = BusScheduler(bus, ModbusTcpTransport(bus, ProfileBook()), on_reading=taken)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    await scheduler.transport.close()
    gateway_rate = count / seconds

    client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=2, retries=0)
    await client.connect()
    profile = meters[0].profile
    bare = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        meter = meters[bare % len(meters)]
        response = await client.read_input_registers(0, count=8, device_id=meter.unit_id)
        profile.decode_registers(response.registers)
        bare += 1
    client.close()
    await simulator.stop()
    return gateway_rate, bare / seconds


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of a process, in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def _bench_memory(
    broker: MosquittoBroker, workdir: Path, seconds: float = 15.0
) -> tuple[float, float, float, int]:
    """(gateway RSS, gateway peak RSS, bare interpreter RSS in MB, readings spooled) with 2,000 meters."""
    simulators = []
    lines = [f'gateway_id = "bench-mem"\n[mqtt]\nurl = "{broker.url}"\n[spool]\npath = "{workdir / "mem.sqlite"}"\n']
    per_bus = 200
    for b in range(MEMORY_METERS // per_bus):
        simulator = ModbusTcpSimulator(_meters(per_bus))
        await simulator.start()
        simulators.append(simulator)
        lines.append(
            f'[[buses]]\nname = "tcp-{b}"\nprotocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = {simulator.port}\n'
            "poll_interval_s = 10\ntimeout_s = 2\n"
        )
        for unit in range(1, per_bus + 1):
            lines.append(f'[[meters]]\nmeter_id = "B{b}-{unit:05d}"\nbus = "tcp-{b}"\nunit_id = {unit}\n')
    config = workdir / "mem.toml"
    config.write_text("".join(lines))
    process = subprocess.Popen(
        [AQUAMI, "gateway", "run", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    bare = subprocess.Popen(
        [sys.executable, "-c", "import gateway.service, aquami.commands.gateway, time; time.sleep(60)"],
    )
    try:
        await asyncio.sleep(seconds)
        rss, peak = _rss_mb(process.pid)
        bare_rss, _ = _rss_mb(bare.pid)
    finally:
        process.terminate()
        bare.kill()
        await asyncio.to_thread(process.wait, 30)
        bare.wait()
        for simulator in simulators:
            await simulator.stop()
    spool = Spool(workdir / "mem.sqlite")
    polled = spool.next_batch_seq()
    spool.close()
    return rss, peak, bare_rss, polled


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="aquami-bench-gw-"))
    broker = MosquittoBroker()
    broker.start()
    try:
        readings = _readings(READINGS)
        bare = bench_bare_paho(broker, readings)
        through = bench_gateway_delivery(broker, readings, workdir)
        floor = bench_spool_floor(readings, workdir)
        print(f"delivery  {READINGS} readings, batches of {BATCH}, window {WINDOW}")
        print(f"  bare paho QoS 1 publish loop      {bare:12,.0f} readings/s")
        print(f"  spool appends alone (fsync each)  {floor:12,.0f} readings/s")
        print(f"  gateway spool → publish → PUBACK  {through:12,.0f} readings/s")
        print(f"  ratio gateway / bare paho         {through / bare:12.2f}")
        print(f"  ratio gateway / spool appends     {through / floor:12.2f}")

        gateway_rate, bare_rate = asyncio.run(_bench_polling())
        print("polling   50 Modbus TCP meters every 20 ms (more than the bus can do), one connection")
        print(f"  bare pymodbus read loop           {bare_rate:12,.0f} readings/s")
        print(f"  gateway scheduler                 {gateway_rate:12,.0f} readings/s")
        print(f"  ratio gateway / bare              {gateway_rate / bare_rate:12.2f}")

        rss, peak, bare_rss, batches = asyncio.run(_bench_memory(broker, workdir))
        print(f"memory    {MEMORY_METERS} configured meters on 10 Modbus TCP buses, polling every 10 s")
        print(f"  bare interpreter, modules loaded  {bare_rss:9.1f} MB")
        print(f"  aquami gateway run                {rss:9.1f} MB (peak {peak:.1f} MB; goal <= 150 MB)")
        print(f"  ratio gateway / bare              {rss / bare_rss:12.2f}")
        print(f"  (batches sealed meanwhile: {batches - 1})")
        print(
            json.dumps(
                {
                    "delivery_ratio": through / bare,
                    "delivery_vs_spool": through / floor,
                    "polling_ratio": gateway_rate / bare_rate,
                    "rss_mb": rss,
                }
            )
        )
    finally:
        broker.close()


if __name__ == "__main__":
    main()
