"""The collector records the meters it hears for the first time in one order (meter ids byte by
byte, ``COLLATE "C"``), as it inserts readings and events: on real connections to the real
database, through the collector's real writer.

Before, it inserted them into ``meters`` in the order it met them (the rows', the messages', then
the events'). Two writers recording the same new meters in different orders (two collectors
sharing a subscription, a collector and a dead-letter replay, the loader and a collector) wait on
each other at ``meters``' primary key: one inserted A and waited for B (held by a third session),
the other inserted C and waited for B; B let go, the first came to C and waited for the second,
which came to A and waited for the first. A deadlock: PostgreSQL rolled one write back."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg

from aquami.contracts.events import events_topic
from collector import meter_gateways
from collector.batch_parser import ReadingRow
from collector.events_parser import EventRow, parse_events_message
from collector.store import ReadingStore
from tests.collector.test_ingest_insert_order import collated_database  # noqa: F401 (a fixture)
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread

GATEWAY = "gw-nm"
TS = "2026-03-02T07:00:00Z"
RECEIVED = datetime(2026, 3, 2, 8, tzinfo=UTC)


def _event(meter_id: str, gateway: str = GATEWAY, ts: str = TS) -> EventRow:
    """A gateway's meter_offline event of ``meter_id``, as the collector parses it."""
    message = {"gateway_id": gateway, "event": "meter_offline", "ts": ts, "meter_id": meter_id, "bus": "b"}
    payload = json.dumps(message | {"consecutive_failures": 3, "last_good": None}).encode()
    rows = parse_events_message(events_topic(gateway), payload, RECEIVED)
    assert isinstance(rows, list), rows
    return rows[0]


def _row(meter_id: str) -> ReadingRow:
    """A reading of ``meter_id`` as the loader gives it to ``write``."""
    return (meter_id, TS, "12.5", None, None, [], "history", 0)


def _write(url: str, rows: Sequence[ReadingRow] = (), events: Sequence[EventRow] = ()) -> int:
    """Through a writer of its own, as another process: how many meters it recorded new."""
    store = ReadingStore(url)
    try:
        return store.write(rows, events=events).new_meters
    finally:
        store.close()


def test_two_writers_registering_the_same_new_meters_in_opposite_orders_do_not_deadlock(
    migrated_database_url: str,
) -> None:
    """A third session holds NM-B (its insert into ``meters`` not committed) while a collector
    stores meter events of NM-A, NM-B and NM-C as they arrived, and the loader stores readings of
    the same three meters in the opposite order. Then the third session lets go.

    Before: the collector had inserted NM-A and waited for NM-B, the loader had inserted NM-C and
    waited for NM-B; one went on to the other's meter and the other back to the first's: a
    deadlock, one write rolled back. Now both insert NM-A, NM-B, NM-C: the collector inserts NM-A
    and waits for NM-B, the loader waits for NM-A behind it; then the collector registers all three
    and the loader finds them registered."""
    url = migrated_database_url
    meters = ["NM-A", "NM-B", "NM-C"]
    # the readings' and events' chunks are there before (their creation by a writer holding a meter
    # would hold the other back at the chunk, not at the meter)
    _write(url, rows=[_row("OTHER")], events=[_event("OTHER")])
    with psycopg.connect(url) as holder:
        holder.execute("INSERT INTO meters (meter_id) VALUES ('NM-B')")
        collector, collector_done = _in_thread(lambda: _write(url, events=[_event(m) for m in meters]))
        _waiting_on_rows(url, 1)
        loader, loader_done = _in_thread(lambda: _write(url, rows=[_row(m) for m in reversed(meters)]))
        _waiting_on_rows(url, 2)
        holder.rollback()
    collector.join(60)
    loader.join(60)
    assert not collector.is_alive() and not loader.is_alive()
    errors = [done["error"] for done in (collector_done, loader_done) if "error" in done]
    assert errors == []
    assert collector_done["result"] + loader_done["result"] == 3
    with psycopg.connect(url) as conn:
        registered = conn.execute("SELECT meter_id FROM meters WHERE meter_id LIKE 'NM-%' ORDER BY meter_id")
        assert registered.fetchall() == [(m,) for m in meters]
        stored = conn.execute("SELECT count(*) FROM readings WHERE meter_id LIKE 'NM-%'").fetchone()
        events = conn.execute("SELECT count(*) FROM events WHERE meter_id LIKE 'NM-%'").fetchone()
    assert (stored, events) == ((3,), (3,))


def test_assigning_meters_while_a_collector_registers_them_does_not_deadlock(migrated_database_url: str) -> None:
    """``assign-meters NM-C NM-B NM-A`` (meters assigned ahead of their fitting, in the order the
    operator typed them) while a collector hears the same three for the first time, a third session
    holding NM-B. Before: the collector inserted NM-A and waited for NM-B, the assignment inserted
    NM-C and waited for NM-B; then each waited for the other, and one was rolled back (the operator's
    command failing on a deadlock). Now the assignment waits for NM-A behind the collector."""
    url = migrated_database_url
    meters = ["NM-A", "NM-B", "NM-C"]
    _write(url, events=[_event("OTHER")])  # (the events' chunk is there before)

    def assign() -> int:
        with psycopg.connect(url) as conn:
            return len(meter_gateways.assign(conn, list(reversed(meters)), [GATEWAY], "test", add=False))

    with psycopg.connect(url) as holder:
        holder.execute("INSERT INTO meters (meter_id) VALUES ('NM-B')")
        collector, collector_done = _in_thread(lambda: _write(url, events=[_event(m) for m in meters]))
        _waiting_on_rows(url, 1)
        operator, operator_done = _in_thread(assign)
        _waiting_on_rows(url, 2)
        holder.rollback()
    collector.join(60)
    operator.join(60)
    assert not collector.is_alive() and not operator.is_alive()
    errors = [done["error"] for done in (collector_done, operator_done) if "error" in done]
    assert errors == []
    assert (collector_done["result"], operator_done["result"]) == (3, 3)
    with psycopg.connect(url) as conn:
        assigned = conn.execute(
            "SELECT meter_id, gateway_id FROM meter_gateways WHERE meter_id LIKE 'NM-%' ORDER BY meter_id"
        )
        assert assigned.fetchall() == [(m, GATEWAY) for m in meters]


# Meter ids whose order as text is not the same in every collation.
_METERS = ["m-10", "M.2", "M10", "m:1", "Ma", "mB", "0-9", "A1", "a-2", "Z", "z.1", "a_2"]


def _meters_in_heap(url: str) -> tuple[list[str], list[str]]:
    """``meters``' ids in the order their rows lie in the table (``ctid``), and in byte order."""
    with psycopg.connect(url) as conn:
        in_heap = [row[0] for row in conn.execute("SELECT meter_id FROM meters ORDER BY ctid").fetchall()]
        in_order = [row[0] for row in conn.execute('SELECT meter_id FROM meters ORDER BY meter_id COLLATE "C"')]
    return in_heap, in_order


def test_new_meters_are_inserted_in_byte_order(collated_database: tuple[str, str]) -> None:  # noqa: F811
    """Twelve new meters, heard shuffled through a collector's events, are inserted into ``meters``
    (their places in its heap, ``ctid``) in the order of ``meter_id COLLATE "C"``: byte by byte,
    in a database of collation C and in one of ICU's English collation. (Events, not readings:
    marking a meter as read updates its row, which moves it in the heap.)"""
    _, url = collated_database
    shuffled = list(_METERS)
    random.Random(11).shuffle(shuffled)
    assert shuffled != sorted(shuffled)  # (the shuffle is not already in order)
    assert _write(url, events=[_event(m) for m in shuffled]) == len(_METERS)
    in_heap, in_order = _meters_in_heap(url)
    assert sorted(in_heap) == sorted(_METERS)  # every meter, once
    assert in_heap == in_order


def test_meters_gone_registered_again_by_their_events_are_inserted_in_byte_order(
    collated_database: tuple[str, str],  # noqa: F811
) -> None:
    """A collector that trusts every gateway knows twelve meters, which are then deleted from
    ``meters`` (the database emptied under it); their events, arriving shuffled, register them
    again (the events' own statement, ``_EVENTS_NEW_METERS``), byte by byte. Before, it said
    ``ORDER BY meter_id`` in the database's collation: in ICU's English one, "a-2" before "A1",
    "m-10" before "M.2", the opposite of their order in the other writers' inserts."""
    _, url = collated_database
    shuffled = list(_METERS)
    random.Random(13).shuffle(shuffled)
    store = ReadingStore(url, check_gateways=False)
    try:
        assert store.write([], events=[_event(m) for m in shuffled]).new_meters == len(_METERS)
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM meters")
        again = [_event(m, ts="2026-03-02T08:00:00Z") for m in shuffled]
        assert store.write([], events=again).new_meters == len(_METERS)
    finally:
        store.close()
    in_heap, in_order = _meters_in_heap(url)
    assert sorted(in_heap) == sorted(_METERS)  # every meter, once
    assert in_heap == in_order
