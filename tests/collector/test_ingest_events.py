"""Events through a real Mosquitto: a gateway's ``meter_offline`` stored by the collector, once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from aquami.contracts.events import events_topic
from collector.batch_parser import RejectedMessage, parse_reads_message
from collector.events_parser import parse_events_message
from gateway.config import parse_config_text
from gateway.service import Gateway
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.collector.test_ingest_mqtt import _ready, count, publisher, running_collector, wait_for
from tests.gateway.helpers import config_text, meters, until
from tests.services import free_port


def test_a_meter_that_stops_answering_is_stored_as_meter_offline(
    tmp_path: Path, migrated_database_url: str, mosquitto
) -> None:
    url, gw = migrated_database_url, "gw-e2e-events"
    offline = "SELECT count(*) FROM events WHERE event = 'meter_offline' AND meter_id = 'WM-0002'"
    stored = "SELECT count(*) FROM readings WHERE meter_id = 'WM-0002'"
    port = free_port()
    text = config_text(
        mosquitto.url,
        {"b": port},
        {"b": [1, 2]},
        str(tmp_path / "spool.sqlite"),
        gateway_id=gw,
        # the absent meter fails at once (the simulator answers "no response" for it): the timeout is for
        # the present ones, whose millisecond answers a loaded machine must not turn into failures (two in
        # a row of WM-0002's while present raised its meter_offline early, with no last_good)
        timeout_s=2.0,
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
            await until(lambda: answered(gateway, "WM-0002"), 20)  # both answer, WM-0002 at least once
            await simulator.stop()
            simulator = ModbusTcpSimulator(meters(1), port=port)  # WM-0002 is gone
            await simulator.start()
            await asyncio.to_thread(wait_for, lambda: count(url, offline) >= 1, 20, "meter_offline in events")
            await asyncio.to_thread(wait_for, lambda: count(url, stored) >= 1, 20, "WM-0002's reading stored")
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
        readings = conn.execute(stored).fetchone()
    assert len(rows) == 1, rows  # once
    gateway_id, meter_id, state, detail, batch_seq = rows[0]
    assert (gateway_id, meter_id, state, batch_seq) == (gw, "WM-0002", "raised", None)
    assert detail["bus"] == "b" and detail["consecutive_failures"] == 2
    assert detail["last_good"] is not None and readings is not None and readings[0] >= 1  # it had answered


def answered(gateway: Gateway, meter_id: str) -> bool:
    """Whether ``meter_id`` has answered a poll (false until the buses have started and track it)."""
    meter = gateway.health.meters.get(meter_id)
    return meter is not None and meter.last_good is not None


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


def test_an_event_dated_by_a_clock_gone_wrong_is_a_dead_letter_as_its_readings_are():
    """A gateway without a battery-backed clock starts at 1970: its reads were refused (before
    2000-01-01) while its events, dated by the same clock, were stored as fact, at 1970-01-01 or
    2099. Events are held to the readings' bounds (TS_MIN, FUTURE_MAX after receipt), every time
    field; an event a day ahead is still taken, as a read is."""
    received = datetime(2026, 3, 2, 12, tzinfo=UTC)

    def event(**times: str | None) -> bytes:
        fields = {"ts": "2026-03-02T11:00:00Z", "last_good": None, **times}
        return json.dumps(
            {"gateway_id": "gw", "event": "meter_offline", "meter_id": "M1", "bus": "b", "consecutive_failures": 3}
            | fields
        ).encode()

    for times, reason in [
        ({"ts": "1970-01-01T00:00:07Z"}, "ts: '1970-01-01T00:00:07Z' is before 2000-01-01"),
        ({"ts": "2099-06-01T00:00:00Z"}, "ts: '2099-06-01T00:00:00Z' is more than a day after the collector received"),
        ({"last_good": "1999-12-31T23:59:59Z"}, "last_good: '1999-12-31T23:59:59Z' is before 2000-01-01"),
    ]:
        refused = parse_events_message("aquami/v1/gw/events", event(**times), received)
        assert isinstance(refused, RejectedMessage) and refused.reason.startswith(reason), (times, refused)
        reads = {"gateway_id": "gw", "batch_seq": 1, "sent_at": "2026-03-02T11:00:00Z", "readings": [
            {"meter_id": "M1", "ts": times.get("ts", "2026-03-02T11:00:00Z"), "volume_m3": 1.5,
             "source": {"protocol": "modbus-tcp", "bus": "b", "address": 1}}]}  # fmt: skip
        if "ts" in times:  # the same clock's reads: refused as well
            assert isinstance(
                parse_reads_message("aquami/v1/gw/reads", json.dumps(reads).encode(), received), RejectedMessage
            )
    for ts in ("2000-01-01T00:00:00Z", "2026-03-03T12:00:00Z"):
        taken = parse_events_message("aquami/v1/gw/events", event(ts=ts, last_good="2000-01-01T00:00:00Z"), received)
        assert not isinstance(taken, RejectedMessage) and [row[1] for row in taken] == [ts]
