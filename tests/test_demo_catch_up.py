"""The demo's wait at stop for the collector to take what the gateway delivered ends once it has,
refused readings included. Through a real simulator, gateway, Mosquitto, collector and TimescaleDB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg

from aquami.demo_tally import let_collector_catch_up
from aquami.mqtt import MqttEndpoint
from collector import meter_gateways
from firmware_protocols.modbus import load_profile
from gateway.config import GatewayConfig, MeterConfig, ModbusTcpBusConfig
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.smart_meter import SmartMeter
from tests.test_end_to_end import HeldRegister, started

GATEWAY, OWN, THEIRS = "gw-catch", "CU-OWN", "CU-THEIRS"
TIMEOUT_S = 5.0


async def _polled_and_delivered(broker_url: str, spool: Path) -> Gateway:
    """A gateway that polls its two meters a few times, then stops, its spool drained to the broker."""
    profile = load_profile("smart_water_meter")
    meters = [
        SmartMeter(meter_id, unit, profile, HeldRegister(10.0 + unit, 0.1))
        for unit, meter_id in ((1, OWN), (2, THEIRS))
    ]
    simulator = ModbusTcpSimulator(meters)
    await simulator.start()
    try:
        bus = ModbusTcpBusConfig(
            name="tcp-1",
            host="127.0.0.1",
            port=simulator.port,
            meters=(MeterConfig(OWN, 1), MeterConfig(THEIRS, 2)),
            poll_interval_s=0.3,
        )
        gateway = Gateway(
            GatewayConfig(gateway_id=GATEWAY, mqtt=MqttEndpoint.parse(broker_url), spool_path=spool, buses=(bus,))
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, drain_timeout=10))
        while gateway.readings_spooled < 6:
            await asyncio.sleep(0.05)
        stop.set()
        await task
    finally:
        await simulator.stop()
    return gateway


def test_the_wait_ends_once_every_delivered_reading_is_taken_refused_ones_included(
    mosquitto, migrated_database_url, tmp_path: Path
) -> None:
    """One of the gateway's two meters is another gateway's: its readings are dead letters. Before,
    the wait counted only readings stored or found stored, never reached the gateway's count, and
    waited out its whole deadline (10 s at every stop of the demo)."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, [THEIRS], ["gw-other"], "test", add=False)
    collector = started(url, mosquitto.url, "catch-up-collector", tmp_path)
    try:

        async def stop_as_the_demo_does() -> tuple[Gateway, bool]:
            gateway = await _polled_and_delivered(mosquitto.url, tmp_path / "spool.sqlite")
            return gateway, await let_collector_catch_up(collector, gateway, timeout_s=TIMEOUT_S)

        gateway, caught_up = asyncio.run(stop_as_the_demo_does())
        counts = collector.counters.snapshot()
    finally:
        collector.stop()
    delivered = gateway.readings_spooled - gateway.spool.depth()
    assert delivered >= 6
    assert caught_up is True  # it did not wait out its deadline
    assert counts["readings_received"] >= delivered
    # the other gateway's meter's readings were refused: stored and duplicates never reach delivered
    assert counts["readings_stored"] + counts["duplicates"] < delivered
    assert counts["dead_letters"] >= 1
