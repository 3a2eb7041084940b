"""The MQTT events contract, from both sides: what the gateway publishes, the collector accepts and stores."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.events import (
    ENVELOPE_FIELDS,
    EVENT_NAMES,
    GATEWAY_EVENTS,
    METER_EVENTS,
    TIME_FIELDS,
    events_schema,
    events_topic,
    schema_errors,
)
from aquami.contracts.reads import Reading, utc_iso
from collector.batch_parser import RejectedMessage
from collector.events_parser import EVENT_COLUMNS, EventRow, parse_events_message
from collector.store import ReadingStore
from gateway.config import parse_config_text
from gateway.health import Health
from gateway.service import Gateway
from tests.gateway.helpers import config_text

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


# --- what the gateway publishes, produced by the gateway itself ------------------------------------


def health_events() -> list[dict[str, Any]]:
    """Every transition Health reports: offline with and without a good read before, then online."""
    clock = [T0]
    health = Health("gw-1", offline_after=2, clock=lambda: clock[0])
    health.track("bus-a", ["M1", "M2"])
    events = []
    for meter_id, outcomes in (("M1", [True, False, False, True]), ("M2", [False, False, False, True])):
        for ok in outcomes:
            clock[0] += timedelta(seconds=61, microseconds=250_000)
            event = health.poll_done(meter_id, ok)
            if event is not None:
                events.append(event)
    events.append(health.poll_done("NEW-1", False) or {})  # a meter nobody tracked: bus ""
    events.append(health.poll_done("NEW-1", False) or {})
    assert [(e.get("event"), e.get("meter_id")) for e in events] == [
        ("meter_offline", "M1"),
        ("meter_online", "M1"),
        ("meter_offline", "M2"),
        ("meter_online", "M2"),
        (None, None),
        ("meter_offline", "NEW-1"),
    ]
    return [e for e in events if e]


def _gateway(tmp_path: Path, name: str, spool: str) -> Gateway:
    text = config_text(
        "mqtt://127.0.0.1:1",  # never connected: what it would publish waits in the spool
        {"b": 1},
        {"b": [1]},
        str(tmp_path / f"{name}.sqlite"),
        gateway_id=name,
        extra_top="[health]\noffline_after = 2\n",
        extra_spool=spool,
    )
    return Gateway(parse_config_text(text))


def _published(gateway: Gateway) -> list[tuple[str, bytes]]:
    """The (topic, payload) pairs the gateway has queued for the broker, exactly as they will go."""
    return [(topic, payload) for _, topic, payload in gateway.spool.messages_after(0, 1000)]


def gateway_messages(tmp_path: Path) -> list[tuple[str, bytes]]:
    """Every kind of event, published through ``Gateway.emit``: a meter going quiet and coming back,
    readings dropped at the spool's limit (drop_oldest), polling stopped and resumed (stop_polling),
    the gateway stopped, a damaged spool file set aside."""
    messages: list[tuple[str, bytes]] = []

    dropping = _gateway(tmp_path, "gw-drop", 'max_readings = 3\npolicy = "drop_oldest"\n')
    meter = dropping.config.meters[0]
    dropping.health.track("b", [meter.meter_id])  # as its bus starts: the gateway hears only meters it tracks
    for ok in (False, False, True):
        dropping._on_heard(meter, ok)

    async def overflow() -> None:
        stop = asyncio.Event()
        writer = asyncio.create_task(dropping._writer(stop))
        for n in range(8):
            await dropping.spool_reading(Reading(meter.meter_id, T0 + timedelta(minutes=n), 1.0 + n))
        stop.set()
        dropping._wake_writer.set()
        await writer

    asyncio.run(overflow())
    dropping._report_overflow()  # the drops summed since the first report
    messages += _published(dropping)
    assert dropping.readings_dropped == 5
    dropping.spool.close()

    stopping = _gateway(tmp_path, "gw-stop", 'max_readings = 2\npolicy = "stop_polling"\n')
    stopping.spool.append([{"n": 1}, {"n": 2}])
    assert stopping._may_poll() is False
    sealed = stopping.spool.seal(10)
    assert sealed is not None
    stopping.spool.acknowledge(sealed.batch_seq)
    assert stopping._may_poll() is True
    messages += _published(stopping)
    stopping.spool.close()

    stopped = _gateway(tmp_path, "gw-stopped", "")
    stopped.stop_reason = "SIGTERM"

    async def run_and_stop() -> None:
        stop = asyncio.Event()
        stop.set()
        await stopped.run(stop, drain_timeout=0)  # the broker unreachable: the event waits in the spool

    asyncio.run(run_and_stop())
    again = _gateway(tmp_path, "gw-stopped", "")  # (run closed the spool)
    messages += _published(again)
    again.spool.close()

    damaged_file = tmp_path / "gw-damaged.sqlite"
    damaged_file.write_bytes(b"this is no SQLite database, a card's garbage" * 100)
    damaged = _gateway(tmp_path, "gw-damaged", "")  # set aside and salvaged as it opens (spool_salvage)
    damaged._say_damage()  # as run says it at its start
    messages += _published(damaged)
    damaged.spool.close()
    return messages


def test_the_gateway_can_publish_every_event_the_contract_names_and_each_is_valid(tmp_path: Path) -> None:
    messages = gateway_messages(tmp_path)
    events = [json.loads(payload) for _, payload in messages]
    for event in events + health_events():
        assert schema_errors(event) == [], (event, schema_errors(event))
    assert {e["event"] for e in events} == set(EVENT_NAMES)
    assert [topic for topic, _ in messages] == [events_topic(e["gateway_id"]) for e in events]
    overflow = [e for e in events if e["event"] == "spool_overflow"]
    assert sum(e["dropped"] for e in overflow) == 5


def test_the_collector_turns_each_gateway_event_into_the_row_it_stores(tmp_path: Path) -> None:
    for topic, payload in gateway_messages(tmp_path):
        event = json.loads(payload)
        rows = parse_events_message(topic, payload)
        assert isinstance(rows, list), rows
        assert rows == [_expected_row(event)]
    for event in health_events():
        assert parse_events_message(events_topic("gw-1"), json.dumps(event).encode()) == [_expected_row(event)]


def _expected_row(event: dict[str, Any]) -> EventRow:
    detail = {k: v for k, v in event.items() if k not in ENVELOPE_FIELDS}
    return (
        event.get("meter_id"),
        event["ts"],
        event["event"],
        "raised",
        json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else None,
        event["gateway_id"],
        None,
    )


def test_the_schema_and_the_module_name_the_same_events_and_time_fields() -> None:
    schema = events_schema()
    assert tuple(schema["properties"]["event"]["enum"]) == EVENT_NAMES
    assert set(METER_EVENTS) | set(GATEWAY_EVENTS) == set(EVENT_NAMES)
    stamped = {
        name
        for part in [schema, *(branch["then"] for branch in schema["allOf"])]
        for name, spec in part.get("properties", {}).items()
        if "utc_timestamp" in json.dumps(spec)
    }
    assert stamped == set(TIME_FIELDS)


# --- what the collector refuses ------------------------------------------------------------------

OFFLINE: dict[str, Any] = {
    "gateway_id": "gw-1",
    "event": "meter_offline",
    "ts": "2026-11-23T08:00:00Z",
    "meter_id": "M1",
    "bus": "bus-a",
    "consecutive_failures": 3,
    "last_good": None,
}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"ts": "2026-11-23T08:00:00"}, "ts:"),
        ({"ts": "2026-11-23T10:00:00+02:00"}, "ts:"),
        ({"ts": 1763884800}, "ts:"),
        ({"ts": "2026-13-40T08:00:00Z"}, "ts: '2026-13-40T08:00:00Z' is not a real UTC time"),
        ({"last_good": "2026-02-30T08:00:00Z"}, "last_good: '2026-02-30T08:00:00Z' is not a real UTC time"),
        ({"last_good": "yesterday"}, "last_good:"),
        ({"event": "meter_exploded"}, "event: 'meter_exploded' is not one of"),
        ({"event": None}, "event:"),
        ({"meter_id": ""}, "meter_id:"),
        ({"meter_id": "M 1"}, "meter_id:"),
        ({"consecutive_failures": -1}, "consecutive_failures:"),
        ({"gateway_id": "gw/1"}, "gateway_id:"),
        ({"dropped": 5}, "'dropped' was unexpected"),
        ({"sent_at": "2026-11-23T08:00:00Z"}, "'sent_at' was unexpected"),
    ],
)
def test_the_collector_rejects_a_broken_event_and_names_the_field(change: dict[str, Any], complaint: str) -> None:
    result = parse_events_message("aquami/v1/gw-1/events", json.dumps({**OFFLINE, **change}).encode())
    assert isinstance(result, RejectedMessage)
    assert complaint in result.reason, result.reason


@pytest.mark.parametrize(
    ("event", "missing"),
    [
        ({k: v for k, v in OFFLINE.items() if k != "meter_id"}, "'meter_id' is a required property"),
        ({k: v for k, v in OFFLINE.items() if k != "ts"}, "'ts' is a required property"),
        ({k: v for k, v in OFFLINE.items() if k != "gateway_id"}, "'gateway_id' is a required property"),
        ({**OFFLINE, "event": "meter_online"}, "'offline_since' is a required property"),
        ({"gateway_id": "gw-1", "event": "spool_overflow", "ts": OFFLINE["ts"]}, "'dropped' is a required property"),
        (
            {
                "gateway_id": "gw-1",
                "event": "spool_full",
                "ts": OFFLINE["ts"],
                "spool_depth": 3,
                "policy": "drop_oldest",
            },
            "policy: 'stop_polling' was expected",
        ),
    ],
)
def test_an_event_without_the_fields_its_name_requires_is_rejected(event: dict[str, Any], missing: str) -> None:
    result = parse_events_message("aquami/v1/gw-1/events", json.dumps(event).encode())
    assert isinstance(result, RejectedMessage)
    assert missing in result.reason, result.reason


def test_a_gateway_cannot_publish_events_under_another_gateways_topic() -> None:
    result = parse_events_message("aquami/v1/gw-2/events", json.dumps(OFFLINE).encode())
    assert isinstance(result, RejectedMessage)
    assert "gateway_id 'gw-1' does not match the topic" in result.reason


@pytest.mark.parametrize("payload", [b"", b"{", b"\xff\xfe", b"[]", b"null", b'"meter_offline"', b"[{}]"])
def test_payloads_that_are_not_a_json_object_are_rejected(payload: bytes) -> None:
    result = parse_events_message("aquami/v1/gw-1/events", payload)
    assert isinstance(result, RejectedMessage)
    assert result.reason.startswith(("not JSON", "(root):")), result.reason


# --- any valid event round-trips -----------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    utc_iso
)
counts = st.integers(0, 10**9)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(EVENT_NAMES))
    event: dict[str, Any] = {"gateway_id": draw(identifiers), "event": name, "ts": draw(times)}
    if name in METER_EVENTS:
        event |= {
            "meter_id": draw(identifiers),
            "bus": draw(st.text(max_size=128)),
            "consecutive_failures": draw(counts),
            "last_good": draw(st.none() | times),
        }
        if name == "meter_online":
            event["offline_since"] = draw(times)
    elif name == "gateway_stopped":
        event |= {"reason": draw(st.text(max_size=500)), "spool_depth": draw(counts)}
    elif name == "spool_damaged":
        event |= {
            "reason": draw(st.text(max_size=500)),
            "set_aside": draw(st.text()),
            "readings_salvaged": draw(counts),
            "readings_lost_at_most": draw(st.none() | counts),
            "events_salvaged": draw(counts),
        }
    elif name == "spool_overflow":
        event |= {"dropped": draw(st.integers(1, 10**9)), "spool_depth": draw(counts), "policy": "drop_oldest"}
    else:
        event |= {"spool_depth": draw(counts), "policy": "stop_polling"}
    keys = draw(st.permutations(list(event)))  # the order of the fields is no part of the contract
    return {k: event[k] for k in keys}


@given(valid_events())
def test_any_valid_event_round_trips_through_the_collectors_parser(event: dict[str, Any]) -> None:
    assert schema_errors(event) == []
    # received when its newest time was: the collector refuses times well ahead of arrival, as for reads
    received_at = max(datetime.fromisoformat(event[k]) for k in TIME_FIELDS if event.get(k) is not None)
    rows = parse_events_message(events_topic(event["gateway_id"]), json.dumps(event).encode(), received_at)
    assert isinstance(rows, list) and len(rows) == 1, rows
    row: dict[str, Any] = dict(zip(EVENT_COLUMNS, rows[0], strict=True))
    assert (row["gateway_id"], row["event"], row["ts"], row["meter_id"]) == (
        event["gateway_id"],
        event["event"],
        event["ts"],
        event.get("meter_id"),
    )
    assert datetime.fromisoformat(row["ts"]) == datetime.fromisoformat(event["ts"])
    detail = json.loads(row["detail"]) if row["detail"] else {}
    assert {**detail, **{k: event[k] for k in ENVELOPE_FIELDS if k in event}} == event  # nothing lost, nothing added


@given(st.binary(max_size=300))
def test_any_bytes_give_rows_or_a_reason_never_an_exception(payload: bytes) -> None:
    result = parse_events_message("aquami/v1/gw-1/events", payload)
    assert isinstance(result, list | RejectedMessage)


# --- stored in the database ----------------------------------------------------------------------


def _stored(url: str, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows: list[EventRow] = []
    for event in events:
        parsed = parse_events_message(events_topic(event["gateway_id"]), json.dumps(event).encode())
        assert isinstance(parsed, list)
        rows += parsed
    store = ReadingStore(url)
    try:
        for _ in range(2):  # a redelivery is a no-op
            store.write([], (), rows)
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT gateway_id, event, ts, meter_id, detail FROM events ORDER BY ts, event, meter_id"
        ).fetchall()


def _as_stored(event: dict[str, Any]) -> tuple[Any, ...]:
    detail = {k: v for k, v in event.items() if k not in ENVELOPE_FIELDS}
    ts = datetime.fromisoformat(event["ts"])
    return (event["gateway_id"], event["event"], ts, event.get("meter_id"), detail or None)


def test_the_collector_stores_each_meter_event_the_gateway_emits_once(migrated_database_url: str) -> None:
    events = health_events()
    stored = _stored(migrated_database_url, events)
    expected = sorted((_as_stored(e) for e in events), key=lambda r: (r[2], r[1], r[3]))
    assert stored == expected


def test_the_collector_stores_each_gateway_event_once(tmp_path: Path, migrated_database_url: str) -> None:
    events = [json.loads(payload) for _, payload in gateway_messages(tmp_path)]
    events = [e for e in events if e["event"] in GATEWAY_EVENTS]
    stored = _stored(migrated_database_url, events)
    assert sorted(stored, key=repr) == sorted((_as_stored(e) for e in events), key=repr)


@pytest.mark.parametrize("field", ["meter_id", "gateway_id"])
def test_an_identifier_with_a_trailing_newline_is_refused_as_the_reads_path_refuses_it(field: str) -> None:
    """The schema's pattern ends in '$', which Python's re lets match before a final newline:
    'WM-0002\\n' registered a second meter and the event was filed under it. (The schema's own
    validator now reads '$' as ECMA-262 does: the refusal is its pattern's.)"""
    event = dict(health_events()[0])  # a meter_offline the gateway's own Health made
    assert parse_events_message(events_topic("gw-1"), json.dumps(event).encode()) == [_expected_row(event)]
    event[field] += "\n"
    refused = parse_events_message(events_topic("gw-1"), json.dumps(event).encode())
    assert isinstance(refused, RejectedMessage)
    assert f"{field}: {event[field]!r} does not match '^[A-Za-z0-9]" in refused.reason
