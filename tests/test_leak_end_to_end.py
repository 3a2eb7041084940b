"""A leak behind a gateway, end to end: meter model → Modbus TCP → gateway → Mosquitto → collector →
TimescaleDB → detection → one open alert, which the next hour's run updates instead of duplicating.

Days pass in seconds: the simulator and the gateway share a simulated clock that the test moves one
hour at a time, once the collector has stored that hour's reading of every meter. The meters' earlier
history (before the gateway was installed) is loaded straight into the database, as a head-end
migration would.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from aquami.mqtt import MqttEndpoint
from collector.alert_store import alerts_for
from collector.batch_parser import ReadingRow
from collector.detection.alerts import AlertKind, AlertStatus
from collector.detection_job import DetectionJobConfig, run_detection_once
from collector.service import Collector, CollectorConfig
from collector.store import ReadingStore
from firmware_protocols.modbus import load_profile
from gateway.config import GatewayConfig, MeterConfig, ModbusTcpBusConfig
from gateway.service import Gateway
from simulators.events import Leak
from simulators.meter_model import MeterModel
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.modelled_meter import ModelledMeter

METERS = 8
HISTORY_HOURS = 8 * 24
LEAKY = "LK-003"


class SimulatedClock:
    """The test moves ``current``; the meters answer at it, and the gateway stamps each reading with
    the instant the meter answered at. (Reading ``current`` again on the gateway's side would race the
    test: a poll answered at 11:00 could be stamped 12:00 when the test moves on in between.)"""

    def __init__(self, start: datetime):
        self.current = start
        self.answered_at = start

    def meter_now(self) -> datetime:
        self.answered_at = self.current
        return self.answered_at

    def gateway_now(self) -> datetime:
        return self.answered_at


def models(start: datetime, leak_start: datetime) -> list[MeterModel]:
    meters = [MeterModel(f"LK-{i:03d}", installed=start - timedelta(days=1), seed=5, dma="D9") for i in range(METERS)]
    meters[3].inject(Leak(start=leak_start, rate_lph=30.0))
    return meters


def load_history(database_url: str, meters: list[MeterModel], start: datetime) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D9', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    rows: list[ReadingRow] = []
    for meter in meters:
        for hour in range(HISTORY_HOURS):
            reading = meter.read(start + timedelta(hours=hour))
            rows.append((meter.meter_id, reading.ts.isoformat(), repr(reading.volume_m3), None, None, [], "import", 0))
    ReadingStore(database_url).write(rows)


def stored_at(database_url: str, ts: datetime) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE ts = %s AND gateway_id = 'leak-gw'", (ts,)).fetchone()
    return int(row[0]) if row else 0


async def live_hours(clock: SimulatedClock, gateway: Gateway, database_url: str, first: datetime, hours: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        for hour in range(hours):
            clock.current = first + timedelta(hours=hour)
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(stored_at, database_url, clock.current) < METERS:
                assert time.monotonic() < deadline, f"hour {clock.current} did not arrive"
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def test_a_leak_behind_a_gateway_opens_one_alert_and_the_next_hour_updates_it(
    mosquitto, migrated_database_url, tmp_path: Path
):
    # a Monday two to three weeks ago: the same week pattern in every run, and all of it in the past
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=14 + today.weekday())
    live_from = start + timedelta(hours=HISTORY_HOURS)
    meters = models(start, leak_start=live_from + timedelta(hours=2))
    load_history(migrated_database_url, meters, start)

    clock = SimulatedClock(live_from)
    profile = load_profile("smart_water_meter")
    units = [ModelledMeter(unit, profile, meter) for unit, meter in enumerate(meters, start=1)]
    endpoint = MqttEndpoint.parse(mosquitto.url)
    collector = Collector(CollectorConfig(migrated_database_url, endpoint, client_id="leak-e2e-collector"))
    collector.start()
    job = DetectionJobConfig(history_days=10)

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(units, clock=clock.meter_now)
        await simulator.start()
        try:
            config = GatewayConfig(
                gateway_id="leak-gw",
                mqtt=endpoint,
                spool_path=tmp_path / "spool.sqlite",
                buses=(
                    ModbusTcpBusConfig(
                        name="tcp-1", host="127.0.0.1", port=simulator.port, poll_interval_s=0.1,
                        meters=tuple(MeterConfig(m.meter_id, u.unit_id) for u, m in zip(units, meters, strict=True)),
                    ),
                ),
            )  # fmt: skip
            # Two days of the leak pass through the gateway; detection runs at the end of them …
            await live_hours(clock, Gateway(config, clock=clock.gateway_now), migrated_database_url, live_from, 48)
            with psycopg.connect(migrated_database_url) as conn:
                live = conn.execute("SELECT meter_id, ts, volume_m3 FROM readings WHERE gateway_id = 'leak-gw'")
                by_id = {m.meter_id: m for m in meters}
                for meter_id, ts, volume in live.fetchall():  # what the meters said, at the instant they said it
                    assert float(volume) == by_id[meter_id].read(ts).volume_m3, (meter_id, ts)
                first = run_detection_once(conn, clock.current, job)
            opened = [a for a in first.opened if a.kind is AlertKind.LEAK]
            assert [a.meter_id for a in opened] == [LEAKY]
            assert opened[0].start >= live_from  # the leak started behind the gateway
            # … and an hour later, the same leak updates the same alert.
            next_hour = live_from + timedelta(hours=48)
            spool = tmp_path / "spool-2.sqlite"
            config2 = GatewayConfig(**{**vars(config), "spool_path": spool})
            await live_hours(clock, Gateway(config2, clock=clock.gateway_now), migrated_database_url, next_hour, 1)
            with psycopg.connect(migrated_database_url) as conn:
                later = run_detection_once(conn, clock.current, job)
                assert not [a for a in later.opened if a.kind is AlertKind.LEAK]
                leaks = [a for a in alerts_for(conn, LEAKY) if a.kind is AlertKind.LEAK]
            assert len(leaks) == 1 and leaks[0].alert_id == opened[0].alert_id
            assert leaks[0].status is AlertStatus.ONGOING and leaks[0].last_seen == next_hour
        finally:
            await simulator.stop()

    try:
        asyncio.run(scenario())
    finally:
        collector.stop()
