"""Events through a real Mosquitto: a gateway's ``meter_offline`` stored by the collector, once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg

from aquami.contracts.events import events_topic
from collector.batch_parser import RejectedMessage, parse_reads_message
from collector.events_parser import parse_events_message
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.collector.test_ingest_mqtt import _ready, count, publisher, running_collector, wait_for
from tests.gateway.helpers import config_text, meters
from tests.services import free_port


def test_a_meter_that_stops_answering_is_stored_as_meter_offline(
    tmp_path: Path, migrated_database_url: str, mosquitto
) -> None:
    url, gw = migrated_database_url, "gw-e2e-events"
    offline = "SELECT count(*) FROM events WHERE event = 'meter_offline' AND meter_id = 'WM-0002'"
    port = free_port()
    text = config_text(
        mosquitto.url,
        {"b": port},
        {"b": [1, 2]},
        str(tmp_path / "spool.sqlite"),
        gateway_id=gw,
        timeout_s=0.2,
        retries=0,
        extra_top="[health]\noffline_after = 2\n",
    )

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(2), port=port)
        await simulator.start()
        gateway = Gateway(parse_config_text(text))
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, drain_timeout=5.0))
        try:
            await asyncio.sleep(1.0)  # both answer
            await simulator.stop()
            simulator = ModbusTcpSimulator(meters(1), port=port)  # WM-0002 is gone
            await simulator.start()
            await asyncio.to_thread(wait_for, lambda: count(url, offline) >= 1, 20, "meter_offline in events")
        finally:
            stop.set()
            await task
            await simulator.stop()

    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        asyncio.run(scenario())
        assert collector.counters.snapshot()["dead_letters"] == 0
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT gateway_id, meter_id, state, detail, batch_seq FROM events WHERE event = 'meter_offline' "
            "AND meter_id = 'WM-0002'"
        ).fetchall()
        readings = conn.execute("SELECT count(*) FROM readings WHERE meter_id = 'WM-0002'").fetchone()
    assert len(rows) == 1, rows  # once
    gateway_id, meter_id, state, detail, batch_seq = rows[0]
    assert (gateway_id, meter_id, state, batch_seq) == (gw, "WM-0002", "raised", None)
    assert detail["bus"] == "b" and detail["consecutive_failures"] == 2
    assert detail["last_good"] is not None and readings is not None and readings[0] >= 1  # it had answered


def test_a_redelivered_event_is_stored_once_and_a_broken_one_is_a_dead_letter(
    migrated_database_url: str, mosquitto
) -> None:
    url, gw = migrated_database_url, "gw-events-once"
    event = {
        "gateway_id": gw,
        "event": "meter_offline",
        "ts": "2026-03-01T02:00:00.500000Z",
        "meter_id": "M9",
        "bus": "rs485-1",
        "consecutive_failures": 3,
        "last_good": None,
    }
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        for _ in range(2):  # a redelivery is a no-op
            publish(events_topic(gw), json.dumps(event).encode())
        publish(events_topic(gw), json.dumps({**event, "event": "meter_exploded"}).encode())
        wait_for(lambda: collector.counters.snapshot()["events_received"] == 2, 20, "both deliveries")
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 1, 20, "the broken event")
        assert collector.counters.snapshot()["events_stored"] == 1
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT meter_id, event, state, detail FROM events").fetchall()
        letter = conn.execute("SELECT topic, reason FROM dead_letters").fetchone()
        registered = conn.execute("SELECT registered FROM meters WHERE meter_id = 'M9'").fetchone()
    assert rows == [("M9", "meter_offline", "raised", {"bus": "rs485-1", "consecutive_failures": 3, "last_good": None})]
    assert letter is not None and letter[0] == events_topic(gw) and "event: 'meter_exploded'" in letter[1]
    assert registered == (False,)  # an unknown meter is recorded for the meterization team


def test_an_integer_of_5000_digits_is_a_clean_dead_letter():
    """Python's JSON reader refuses integers of over 4,300 digits with a ValueError that escaped the
    parsers: the collector logged a traceback and a "could not parse" dead letter."""
    payload = b'{"gateway_id":"gw","batch_seq":' + b"9" * 5000 + b"}"
    for parse in (parse_events_message, parse_reads_message):
        refused = parse("aquami/v1/gw/events", payload)
        assert isinstance(refused, RejectedMessage) and refused.reason.startswith("not JSON: Exceeds the limit")
