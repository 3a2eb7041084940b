"""``meters.has_readings`` is set for a meter only once a reading of it is stored (collector migration
0067): the meters API, the job cards' check and VEE's load look for a meter's reads only where it is
set, so it must be true wherever one is stored, and is false only where certainly none is.

Before, the collector's write set it for every meter it registered, whether its readings were
stored or all refused (a neighbour's meter overheard by a gateway it is not assigned to), and a
meter first heard through a meter event, or assigned ahead of its fitting, was recorded with the
column's default, true. Through the collector's real writer on the real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aquami.contracts.events import events_topic
from collector import meter_gateways
from collector.batch_parser import ParsedMessage, ReadingRow, parse_reads_message
from collector.events_parser import parse_events_message
from collector.store import ReadingStore
from tests.collector.test_ingest_mqtt import reads

T0 = "2026-03-01T00:00:00Z"


def _flags(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT meter_id, has_readings FROM meters").fetchall())


def _stored(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT meter_id FROM readings").fetchall()}


def _message(gateway: str, seq: int, readings: list[tuple[str, str, float]]) -> ParsedMessage:
    parsed = parse_reads_message(f"aquami/v1/{gateway}/reads", reads(gateway, seq, readings))
    assert isinstance(parsed, ParsedMessage)
    return parsed


def test_a_meter_whose_every_reading_is_refused_keeps_has_readings_false(migrated_database_url: str) -> None:
    """gw-b overhears gw-a's meter WM-N (assigned ahead of its fitting): its readings are dead
    letters, and WM-N still has none stored; gw-b's own new meter WM-B has its reading stored."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, ["WM-N"], ["gw-a"], "test", add=False)
    assert _flags(url) == {"WM-N": False}  # assigned ahead of its fitting: no reading yet
    store = ReadingStore(url)
    try:
        outcome = store.write_messages([_message("gw-b", 1, [("WM-N", T0, 5.0), ("WM-B", T0, 1.0)])])
    finally:
        store.close()
    assert (outcome.inserted, len(outcome.refused)) == (1, 1)
    assert _stored(url) == {"WM-B"}
    assert _flags(url) == {"WM-N": False, "WM-B": True}


def test_a_meter_first_heard_through_an_event_has_no_readings(migrated_database_url: str) -> None:
    url = migrated_database_url
    event = {"gateway_id": "gw-e", "event": "meter_offline", "ts": T0, "meter_id": "WM-E", "bus": "b"}
    payload = json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode()
    rows = parse_events_message(events_topic("gw-e"), payload, datetime(2026, 3, 1, 1, tzinfo=UTC))
    assert isinstance(rows, list)
    store = ReadingStore(url)
    try:
        store.write_messages([], events=rows)
        assert _flags(url) == {"WM-E": False}
        store.write_messages([_message("gw-e", 2, [("WM-E", T0, 3.0)])])  # then its first reading
    finally:
        store.close()
    assert _flags(url) == {"WM-E": True}


_METERS = st.sampled_from(["M1", "M2", "M3", "M4"])
_GATEWAYS = st.sampled_from(["gw-a", "gw-b"])
_WRITES = st.lists(
    st.lists(st.tuples(_METERS, st.integers(0, 3)), min_size=1, max_size=5).flatmap(
        lambda readings: st.tuples(_GATEWAYS, st.just(readings))
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(assigned=st.dictionaries(_METERS, _GATEWAYS, max_size=3), writes=_WRITES, one_store=st.booleans())
def test_has_readings_says_whether_a_meter_has_a_reading_stored(
    migrated_database_url: str,
    assigned: dict[str, str],
    writes: list[tuple[str, list[tuple[str, int]]]],
    one_store: bool,
) -> None:
    """Whatever meters are assigned ahead and whatever gateways send (each message through one
    writer, or each through a writer of its own, as after restarts), a meter's ``has_readings`` is
    true exactly where ``readings`` holds one of it."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, meters, dead_letters CASCADE")
        for meter, gateway in assigned.items():
            meter_gateways.assign(conn, [meter], [gateway], "test", add=False)
    stores = [ReadingStore(url)] if one_store else []
    try:
        for seq, (gateway, readings) in enumerate(writes):
            if not one_store:
                stores.append(ReadingStore(url))
            at = [(meter, f"2026-03-01T0{hour}:00:00Z", 1.0 + hour) for meter, hour in readings]
            stores[-1].write_messages([_message(gateway, seq, at)])
    finally:
        for store in stores:
            store.close()
    flags, stored = _flags(url), _stored(url)
    assert stored <= set(flags)
    assert {meter for meter, flag in flags.items() if flag} == stored


def test_rows_written_with_an_event_refused_for_its_gateway_mark_their_meters(migrated_database_url: str) -> None:
    """Rows given to ``write`` (a head-end's history, the demo's catch-up: not held to gateways) in
    the same write as a meter event from a gateway its meter is not assigned to (gw-b's report of
    gw-a's WM-A): the event is a dead letter, and the rows' meters, whose readings are stored, are
    marked as read. Before, holding the write to its gateways rebuilt its readings without the rows'
    meters: WM-H and WM-A's readings were stored, and both stayed false (the meters API showed no
    latest reading, VEE never looked at them)."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, ["WM-A"], ["gw-a"], "test", add=False)
    event = {"gateway_id": "gw-b", "event": "meter_offline", "ts": T0, "meter_id": "WM-A", "bus": "b"}
    payload = json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode()
    events = parse_events_message(events_topic("gw-b"), payload, datetime(2026, 3, 1, 1, tzinfo=UTC))
    assert isinstance(events, list)
    rows: list[ReadingRow] = [
        (meter, f"2026-03-01T0{hour}:00:00Z", f"{10 + hour}.5", None, None, [], "history", 0)
        for meter in ("WM-H", "WM-A")
        for hour in range(3)
    ]
    store = ReadingStore(url)
    try:
        outcome = store.write(rows, events=events)
    finally:
        store.close()
    assert (outcome.inserted, outcome.events_inserted, len(outcome.refused)) == (6, 0, 1)
    assert _stored(url) == {"WM-H", "WM-A"}
    assert _flags(url) == {"WM-A": True, "WM-H": True}


def test_rows_of_a_meter_no_gateway_is_assigned_register_it_with_an_event_refused_for_it(
    migrated_database_url: str,
) -> None:
    """A collector storing only meters assigned ahead (``assigned_only``) is given rows of WM-U (the
    loader's history, the demo's catch-up: not held to gateways) in the same write as gw-b's meter
    event of WM-U, which no gateway is assigned to. The event is a dead letter; the rows are stored
    as given, and WM-U is registered (unregistered, as any meter first heard) and marked as read.
    Before, the refused event took WM-U off the meters to register: its three readings were stored
    of a meter ``meters`` does not hold (no foreign key refuses them), which the meters API, VEE and
    billing never list."""
    url = migrated_database_url
    event = {"gateway_id": "gw-b", "event": "meter_offline", "ts": T0, "meter_id": "WM-U", "bus": "b"}
    payload = json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode()
    events = parse_events_message(events_topic("gw-b"), payload, datetime(2026, 3, 1, 1, tzinfo=UTC))
    assert isinstance(events, list)
    rows: list[ReadingRow] = [
        ("WM-U", f"2026-03-01T0{hour}:00:00Z", f"{10 + hour}.5", None, None, [], "history", 0) for hour in range(3)
    ]
    store = ReadingStore(url, assigned_only=True)
    try:
        outcome = store.write(rows, events=events)
    finally:
        store.close()
    assert (outcome.inserted, outcome.events_inserted, len(outcome.refused)) == (3, 0, 1)
    assert outcome.new_meters == 1
    assert _stored(url) == {"WM-U"}
    assert _flags(url) == {"WM-U": True}
    with psycopg.connect(url) as conn:
        letters = conn.execute("SELECT meter_id, gateway_id FROM dead_letters").fetchall()
        registered = conn.execute("SELECT registered, last_gateway_id FROM meters").fetchall()
    assert letters == [("WM-U", "gw-b")]
    assert registered == [(False, "history")]
