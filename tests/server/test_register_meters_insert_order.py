"""register-meters records meters in the collector's order (meter ids byte by byte, ``COLLATE
"C"``): on real connections to the real database, through the collector's real writer.

Before, :func:`server.meters.repository.register_meters` inserted them in the file's order. A
collector hearing the same new meters inserts them byte by byte: the two waited on each other at
``meters``' primary key (one inserted A and waited for B, held by a third session; the other
inserted C and waited for B; B let go, each came to the other's meter). A deadlock: PostgreSQL
rolled one back, the whole register-meters file or the collector's batch."""

from __future__ import annotations

import random

import psycopg

from server.meters.repository import register_meters
from tests.collector.test_ingest_insert_order import collated_database  # noqa: F401 (a fixture)
from tests.collector.test_new_meters_insert_order import _METERS, _event, _meters_in_heap, _write
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows
from tests.server.test_correction_and_ingest_take_turns import _in_thread


def _register(url: str, meters: list[tuple[str, str | None, str]], bulk: set[str] | None = None) -> None:
    """register-meters of ``meters`` on a connection of its own, committed, as another process."""
    with psycopg.connect(url) as conn:
        register_meters(conn, meters, bulk=set() if bulk is None else bulk)


def test_registering_meters_while_a_collector_hears_them_does_not_deadlock(migrated_database_url: str) -> None:
    """register-meters of a file listing NM-C, NM-B, NM-A while a collector hears the same three
    for the first time (events of NM-A, NM-B, NM-C), a third session holding NM-B. Then it lets go.

    Before: the collector inserted NM-A and waited for NM-B, register-meters inserted NM-C and
    waited for NM-B; then each came to the other's meter: a deadlock, one rolled back. Now
    register-meters inserts NM-A first and waits behind the collector, then registers all three."""
    url = migrated_database_url
    meters = ["NM-A", "NM-B", "NM-C"]
    # the events' chunk is there before (its creation by a writer holding a meter would hold the
    # other back at the chunk, not at the meter)
    _write(url, events=[_event("OTHER")])
    with psycopg.connect(url) as holder:
        holder.execute("INSERT INTO meters (meter_id) VALUES ('NM-B')")
        collector, collector_done = _in_thread(lambda: _write(url, events=[_event(m) for m in meters]))
        _waiting_on_rows(url, 1)
        registrar, registrar_done = _in_thread(
            lambda: _register(url, [(m, "DMA1", "customer") for m in reversed(meters)])
        )
        _waiting_on_rows(url, 2)
        holder.rollback()
    collector.join(60)
    registrar.join(60)
    assert not collector.is_alive() and not registrar.is_alive()
    errors = [done["error"] for done in (collector_done, registrar_done) if "error" in done]
    assert errors == []
    assert collector_done["result"] == 3  # the collector came first: all three new to it
    with psycopg.connect(url) as conn:
        registered = conn.execute(
            "SELECT meter_id, registered, dma, role FROM meters WHERE meter_id LIKE 'NM-%' ORDER BY meter_id"
        ).fetchall()
    assert registered == [(m, True, "DMA1", "customer") for m in meters]


def test_registered_meters_are_inserted_in_byte_order(collated_database: tuple[str, str]) -> None:  # noqa: F811
    """Twelve meters in a file, shuffled, are inserted into ``meters`` (their places in its heap,
    ``ctid``) byte by byte, as the collector inserts them: in a database of collation C and in one
    of ICU's English collation."""
    _, url = collated_database
    shuffled = list(_METERS)
    random.Random(17).shuffle(shuffled)
    assert shuffled != sorted(shuffled)  # (the shuffle is not already in order)
    _register(url, [(m, "D1", "customer") for m in shuffled])
    in_heap, in_order = _meters_in_heap(url)
    assert sorted(in_heap) == sorted(_METERS)  # every meter, once
    assert in_heap == in_order


def test_a_meter_listed_twice_keeps_its_last_row_as_before(migrated_database_url: str) -> None:
    """Sorting keeps a file's rows of one meter in their order: its last row is what is recorded
    (each row recorded over the one before, as in the file's order), bulk included."""
    url = migrated_database_url
    rows: list[tuple[str, str | None, str]] = [("M-2", "D1", "customer"), ("M-1", "D1", "inlet")]
    rows += [("M-2", "D2", "customer"), ("M-1", None, "customer")]
    _register(url, rows, bulk={"M-2"})
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT meter_id, dma, role, bulk FROM meters ORDER BY meter_id").fetchall()
    assert stored == [("M-1", None, "customer", False), ("M-2", "D2", "customer", True)]
