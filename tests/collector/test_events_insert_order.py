"""The collector inserts a batch's events in one order (meter ids byte by byte, ``COLLATE "C"``, then
time, then the rest of the events' key), as it inserts readings: on real connections to the real
database, through the collector's real writer.

Before, it inserted them in the order they arrived. Two collectors sharing a subscription (or a
collector and a dead-letter replay) writing the same events in different orders wait on each other
at ``events_key``: one inserted A and waited for B (held by a third session), the other inserted C
and waited for B; B let go, the first came to C and waited for the second, which came to A and
waited for the first. A deadlock: PostgreSQL rolled one write back (the collector counts it and
tries again), nothing lost but a batch's work thrown away."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import psycopg

from aquami.contracts.events import events_topic
from collector import meter_gateways
from collector.events_parser import EventRow, parse_events_message
from collector.store import ReadingStore
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread

GATEWAY = "gw-ev"
TS = "2026-03-02T07:00:00Z"
RECEIVED = datetime(2026, 3, 2, 8, tzinfo=UTC)


def _event(meter_id: str | None, ts: str = TS, name: str = "meter_offline", gateway: str = GATEWAY) -> EventRow:
    """One event as the collector parses it from its message."""
    if meter_id is None:
        message: dict[str, object] = {"gateway_id": gateway, "event": "spool_full", "ts": ts}
        message |= {"spool_depth": 10, "policy": "stop_polling"}
    else:
        message = {"gateway_id": gateway, "event": name, "ts": ts, "meter_id": meter_id, "bus": "b"}
        message |= {"consecutive_failures": 3, "last_good": None}
        if name == "meter_online":
            message |= {"offline_since": "2026-03-02T06:00:00Z"}
    rows = parse_events_message(events_topic(gateway), json.dumps(message).encode(), RECEIVED)
    assert isinstance(rows, list), rows
    return rows[0]


def _write_events(url: str, events: list[EventRow]) -> int:
    store = ReadingStore(url)
    try:
        return store.write([], events=events).events_inserted
    finally:
        store.close()


def test_two_writers_of_the_same_events_in_opposite_orders_do_not_deadlock(migrated_database_url: str) -> None:
    """A third session holds EV-B's event (its insert not committed) while one writer stores the
    events of EV-A, EV-B and EV-C as they arrived, and another the same three in the opposite order
    (two collectors sharing a subscription, each given a different share of redeliveries). Then the
    third session lets go.

    Before: the first had inserted A and waited for B, the second had inserted C and waited for B;
    one went on to C, the other to A, each waiting for the other: a deadlock, one write rolled back.
    Now both insert A, B, C: the first inserts A and waits for B, the second waits for A behind it;
    then the first stores all three and the second finds them stored."""
    url = migrated_database_url
    meters = ["EV-A", "EV-B", "EV-C"]
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, meters, [GATEWAY], "test", add=False)
    # the events' chunk is there before (its creation, by the holder, would hold both writers back)
    assert _write_events(url, [_event(None)]) == 1
    with psycopg.connect(url) as holder:
        holder.execute(
            "INSERT INTO events (meter_id, ts, event, state, gateway_id) "
            "VALUES (%s, %s, 'meter_offline', 'raised', %s)",
            ("EV-B", TS, GATEWAY),
        )
        first, first_done = _in_thread(lambda: _write_events(url, [_event(m) for m in meters]))
        _waiting_on_rows(url, 1)
        second, second_done = _in_thread(lambda: _write_events(url, [_event(m) for m in reversed(meters)]))
        _waiting_on_rows(url, 2)
        holder.rollback()
    first.join(60)
    second.join(60)
    assert not first.is_alive() and not second.is_alive()
    errors = [done["error"] for done in (first_done, second_done) if "error" in done]
    assert errors == []
    assert first_done["result"] + second_done["result"] == 3
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT meter_id FROM events WHERE meter_id IS NOT NULL ORDER BY meter_id").fetchall()
    assert stored == [(m,) for m in meters]


# Meter ids whose order as text is not the same in every collation, a gateway's own event (no
# meter), several times and events of one meter, two gateways.
_METERS = ["m-10", "M.2", "M10", "m:1", "Ma", "mB", "0-9", "A1", "a-2", "Z"]
_TIMES = ["2026-03-02T07:00:00Z", "2026-03-02T06:59:59Z", "2026-03-02T07:00:01Z"]


def _shuffled_events() -> list[EventRow]:
    names = ("meter_offline", "meter_online")
    events = [_event(meter, ts, name) for meter in _METERS for ts in _TIMES for name in names]
    events += [_event(None, ts, gateway=gateway) for ts in _TIMES for gateway in (GATEWAY, "gw-ev2")]
    random.Random(7).shuffle(events)
    return events


def test_a_batch_of_events_is_inserted_in_meter_then_time_order(migrated_database_url: str) -> None:
    """66 events arriving shuffled are inserted (their places in the table's heap, ``ctid``, in one
    chunk) in the order of (meter_id COLLATE "C", ts, gateway_id COLLATE "C", event COLLATE "C"):
    meter ids byte by byte, then time, then the rest of the key; a gateway's own events last."""
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, _METERS, [GATEWAY], "test", add=False)
    events = _shuffled_events()
    assert _write_events(url, events) == len(events)
    with psycopg.connect(url) as conn:
        in_heap = conn.execute("SELECT meter_id, ts, gateway_id, event FROM events ORDER BY ctid").fetchall()
        in_order = conn.execute(
            'SELECT meter_id, ts, gateway_id, event FROM events ORDER BY meter_id COLLATE "C", ts, '
            'gateway_id COLLATE "C", event COLLATE "C"'
        ).fetchall()
    arrival = [(e[0], datetime.fromisoformat(e[1]), e[5], e[2]) for e in events]
    assert arrival != in_order  # (the shuffle is not already in order)
    assert sorted(in_heap, key=repr) == sorted(arrival, key=repr)  # every event stored, once
    assert in_heap == in_order
