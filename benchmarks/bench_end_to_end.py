"""End to end: readings per second through the whole skeleton, beside what the meters alone give.

Simulated Modbus TCP meters (four buses of 50) → the gateway, polling back to back → Mosquitto →
the collector → TimescaleDB. Timed from the gateway's start until every reading it took is
committed. Each meter is due every ``POLL_INTERVAL_S``: the cap that puts on the gateway is printed
beside the poll ceiling, which it must exceed. Baselines measured in the same run:

- the poll ceiling: a bare pymodbus loop reading the same meters over the same four connections, the
  most any gateway could take from them (no spool, no publishing, no database);
- raw ``COPY``: the same number of rows copied straight into ``readings``, the database's ceiling.

    python -m benchmarks.bench_end_to_end [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from pymodbus.client import AsyncModbusTcpClient

from aquami.mqtt import MqttEndpoint
from collector.migrate import migrate
from collector.service import Collector, CollectorConfig
from firmware_protocols.modbus import load_profile
from gateway.config import GatewayConfig, MeterConfig, ModbusTcpBusConfig
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SmartMeter, SteadyFlow
from tests.services import MosquittoBroker, admin_url, create_database, drop_database

BUSES = 4
METERS_PER_BUS = 50
#: Each meter is due this often: the schedule allows 4 × 50 / 0.01 = 20,000 readings/s, well above
#: the poll ceiling (about 7,000-7,700/s here); at 0.05 s (4,000/s) it capped the gateway below the
#: ceiling, and the ratio measured the schedule.
POLL_INTERVAL_S = 0.01


def _meters(bus: int) -> list[SmartMeter]:
    profile = load_profile("smart_water_meter")
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        SmartMeter(f"B{bus}-{unit:03d}", unit, profile, SteadyFlow(start, 100.0 + unit, 0.01 * unit))
        for unit in range(1, METERS_PER_BUS + 1)
    ]


async def _simulators() -> list[ModbusTcpSimulator]:
    simulators = [ModbusTcpSimulator(_meters(bus)) for bus in range(BUSES)]
    for simulator in simulators:
        await simulator.start()
    return simulators


async def poll_ceiling(seconds: float) -> float:
    """Readings per second a bare pymodbus loop gets from the same meters, one loop per bus."""
    simulators = await _simulators()
    count = 0
    block = load_profile("smart_water_meter").blocks[0]  # the gateway's one request a poll

    async def loop(port: int) -> None:
        nonlocal count
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for unit in range(1, METERS_PER_BUS + 1):
                response = await client.read_input_registers(block.start, count=block.count, device_id=unit)
                assert not response.isError()
                count += 1
        client.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop(s.port) for s in simulators))
    elapsed = time.perf_counter() - started
    for simulator in simulators:
        await simulator.stop()
    return count / elapsed


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


async def end_to_end(broker: MosquittoBroker, database_url: str, seconds: float, workdir: Path) -> tuple[int, float]:
    """(readings, readings per second) from the gateway's start until all are committed."""
    simulators = await _simulators()
    endpoint = MqttEndpoint.parse(broker.url)
    collector = Collector(CollectorConfig(database_url, endpoint, client_id="bench-e2e-collector"))
    collector.start()
    buses = tuple(
        ModbusTcpBusConfig(
            name=f"tcp-{bus}", host="127.0.0.1", port=simulator.port, poll_interval_s=POLL_INTERVAL_S, jitter=0.0,
            meters=tuple(MeterConfig(m.meter_id, m.unit_id) for m in _meters(bus)),
        )
        for bus, simulator in enumerate(simulators)
    )  # fmt: skip
    config = GatewayConfig(gateway_id="bench-e2e", mqtt=endpoint, spool_path=workdir / "spool.sqlite", buses=buses)
    gateway = Gateway(config)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(gateway.run(stop, drain_timeout=60))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    taken = gateway.readings_spooled
    while await asyncio.to_thread(_stored, database_url) < taken:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    collector.stop()
    for simulator in simulators:
        await simulator.stop()
    return taken, taken / elapsed


def raw_copy(database_url: str, rows: int) -> float:
    """Rows per second for ``COPY`` of ``rows`` readings straight into the table."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    data = [(f"C{i % 200:03d}", t0 + timedelta(seconds=i), 100.0 + i / 1000, 0.5) for i in range(rows)]
    with psycopg.connect(database_url) as conn:
        conn.execute("TRUNCATE readings")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3, flow_m3h) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        conn.commit()
        return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    server = admin_url()
    database_url = create_database(server)
    broker = MosquittoBroker()
    broker.start()
    try:
        migrate(database_url)
        with tempfile.TemporaryDirectory() as workdir:
            taken, e2e = asyncio.run(end_to_end(broker, database_url, args.seconds, Path(workdir)))
        ceiling = asyncio.run(poll_ceiling(args.seconds))
        copy_rate = raw_copy(database_url, taken)
    finally:
        broker.close()
        drop_database(server, database_url)
    cap = BUSES * METERS_PER_BUS / POLL_INTERVAL_S
    print(f"meters: {BUSES} Modbus TCP buses × {METERS_PER_BUS}; run {args.seconds:g} s; {taken} readings")
    binding = ", NOT above it: the ratio measures the schedule" if cap <= ceiling else ""
    print(
        f"each meter due every {POLL_INTERVAL_S * 1000:g} ms: the gateway's schedule allows {cap:,.0f} readings/s "
        f"({cap / ceiling:.1f}× the poll ceiling{binding})"
    )
    print(f"{'path':<52}{'readings/s':>12}{'ratio':>9}")
    print(f"{'meters → gateway → MQTT → collector → TimescaleDB':<52}{e2e:>12,.0f}{1:>9.2f}")
    print(f"{'bare pymodbus loop over the same meters (poll ceiling)':<52}{ceiling:>12,.0f}{e2e / ceiling:>9.2f}")
    print(f"{'raw COPY of as many rows (database ceiling)':<52}{copy_rate:>12,.0f}{e2e / copy_rate:>9.3f}")
    print("ratio = end to end ÷ baseline; the poll ceiling bounds what the wire can give.")


if __name__ == "__main__":
    main()
