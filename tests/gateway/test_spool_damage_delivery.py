"""A gateway whose spool file is damaged starts, polls, and delivers what was salvaged from it to a real
Mosquitto and collector, into TimescaleDB, each reading once (those the collector had before too:
acknowledgements lost, as after a power cut), and its health status and a ``spool_damaged`` event say
so, to the collector's ``gateway_status`` and ``events``. Before, the gateway stopped at its start,
exit 1, and its supervisor started it again, for ever: nothing polled, nothing delivered."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from aquami.contracts.events import schema_errors as event_errors
from aquami.contracts.status import schema_errors as status_errors
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.gateway.helpers import Subscriber, config_text, meters, running, until
from tests.gateway.spool_damage import overwrite_pages, readable_ids, readings, rows, table_pages, write_spool
from tests.test_end_to_end import started, wait_for

pytestmark = pytest.mark.services

GATEWAY = "gw-damaged"


def _keys(bodies: list[str]) -> set[tuple[str, str]]:
    return {(r["meter_id"], r["ts"]) for r in map(json.loads, bodies)}


def _stored(database_url: str) -> list[tuple[str, str]]:
    """(meter_id, ts) of every stored reading of the spool's meters (SP-0000…), repeats included."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT meter_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM readings "
            "WHERE gateway_id = %s AND meter_id LIKE 'SP-%%' ORDER BY 1, 2",
            (GATEWAY,),
        ).fetchall()
    return [(str(m), str(t)) for m, t in found]


def test_a_damaged_spool_is_salvaged_and_delivered_once_and_the_gateway_says_so(
    tmp_path: Path, mosquitto, migrated_database_url: str
) -> None:
    spool_path = tmp_path / "gw.sqlite"
    bodies = readings(600, prefix="SP")
    write_spool(spool_path, bodies, sealed_batches=3)
    original = rows(spool_path)
    leaves = sorted(p for p, where in table_pages(spool_path, "readings").items() if where != "/")
    bad = leaves[len(leaves) // 2]
    readable = readable_ids(spool_path, [bad])  # once: the file is read whole for it
    salvageable = {body for i, body, _ in original if i in readable}
    lost = _keys([body for _, body, _ in original]) - _keys(list(salvageable))
    overwrite_pages(spool_path, [bad], b"\x00\xff")

    collector = started(migrated_database_url, mosquitto.url, "dmg-collector", tmp_path)
    # the first 100 the collector has already: delivered before the damage, their acknowledgement lost
    delivered_before = readings(100, prefix="SP")
    with psycopg.connect(migrated_database_url) as conn:
        for r in delivered_before:
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, quality, gateway_id) VALUES (%s, %s, %s, 'actual', %s)",
                (r["meter_id"], r["ts"], r["volume_m3"], GATEWAY),
            )
    subscriber = Subscriber(mosquitto.url, [f"aquami/v1/{GATEWAY}/#"], client_id="dmg-sub")
    expected = _keys(list(salvageable)) | _keys([json.dumps(r) for r in delivered_before])

    async def scenario() -> tuple[int, dict[str, object]]:
        simulator = ModbusTcpSimulator(meters(2))
        await simulator.start()
        text = config_text(
            mosquitto.url, {"b": simulator.port}, {"b": [1, 2]}, str(spool_path), gateway_id=GATEWAY, batch_size=50
        )
        gateway = Gateway(parse_config_text(text))
        try:
            async with running(gateway):
                await until(lambda: gateway.spool.depth() == 0 and gateway.readings_spooled >= 4, 30)
                await asyncio.to_thread(
                    wait_for, lambda: set(_stored(migrated_database_url)) >= expected, 30, "the salvaged readings"
                )
                polled = gateway.readings_spooled
                status = gateway.status()
        finally:
            await simulator.stop()
        return polled, status

    try:
        polled, status = asyncio.run(scenario())
        wait_for(lambda: bool(subscriber.payloads("/events")), 10, "the spool_damaged event")
        with psycopg.connect(migrated_database_url) as conn:

            def events_stored() -> int:
                found = conn.execute("SELECT count(*) FROM events WHERE event = 'spool_damaged'").fetchone()
                return 0 if found is None else int(found[0])

            wait_for(lambda: events_stored() == 1, 10, "the collector to store the event")
            kept_health = conn.execute("SELECT health FROM gateway_status WHERE gateway_id = %s", (GATEWAY,)).fetchone()
    finally:
        subscriber.close()
        collector.stop()

    stored = _stored(migrated_database_url)
    assert len(stored) == len(set(stored))  # each reading once
    assert set(stored) == expected  # the salvaged and those delivered before; none of the lost
    assert not lost & set(stored) - _keys([json.dumps(r) for r in delivered_before])
    assert polled >= 4  # the gateway polled its meters meanwhile

    said = status["spool_damaged"]
    assert isinstance(said, dict)
    assert said["readings_salvaged"] == len(salvageable) and said["readings_lost_at_most"] == 600 - len(salvageable)
    assert (tmp_path / str(said["set_aside"])).exists()
    healths = subscriber.payloads("/status/health")
    assert healths and all(status_errors(h) == [] for h in healths)
    assert healths[0]["spool_damaged"]["set_aside"] == said["set_aside"]
    assert kept_health is not None and kept_health[0]["spool_damaged"]["set_aside"] == said["set_aside"]
    (event,) = [e for e in subscriber.payloads("/events") if e["event"] == "spool_damaged"]
    assert event_errors(event) == []
    assert (event["set_aside"], event["readings_salvaged"]) == (said["set_aside"], len(salvageable))
