"""The collector's ``messages`` and ``dead_letters`` counters add up, whether a batch is stored at
once or, refused by the database, message by message.

``messages`` counts the MQTT messages the collector took and is done with (stored, in whole or in
part, or kept as dead letters), each once; ``dead_letters`` the dead letters it wrote (a message may
give more than one: its untimely readings, then itself if the database refuses its rows).
``aquami collector leave-group`` takes ``messages`` reaching the messages that arrived for every one
stored. Through a real Mosquitto and TimescaleDB."""

from __future__ import annotations

import json

import psycopg
import pytest

from collector import meter_gateways
from tests.collector.test_ingest_mqtt import (
    _ready,
    _refuse_writes,
    count,
    publisher,
    reads,
    running_collector,
    wait_for,
)

T0, UNTIMELY = "2026-03-01T00:00:00Z", "1999-12-31T00:00:00Z"  # before 2000: a dead letter of its own


@pytest.mark.parametrize("refused", [False, True], ids=["stored-at-once", "stored-message-by-message"])
def test_each_message_is_counted_once_and_each_dead_letter_once(migrated_database_url, mosquitto, refused):
    """Four messages wait in one batch while the database takes no writes: two with an untimely
    reading (each a dead letter) besides a good one, a message that is not JSON, and a good one.
    With ``refused``, one of them has a reading the database refuses (a CHECK this test adds): the
    batch is stored message by message and that message becomes a dead letter too. Before, a
    message with untimely readings was counted as a message twice there (6 messages of 4)."""
    url, gw = migrated_database_url, "gw-cc"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        letters_before = count(url, "SELECT count(*) FROM dead_letters")
        with psycopg.connect(url, autocommit=True) as admin:
            if refused:
                admin.execute("ALTER TABLE readings ADD CONSTRAINT no_13 CHECK (volume_m3 <> 13)")
            _refuse_writes(admin, name)
            before = collector.counters.snapshot()
            publish(f"aquami/v1/{gw}/reads", reads(gw, 101, [("C-A", T0, 1.0), ("C-A", UNTIMELY, 0.5)]))
            publish(f"aquami/v1/{gw}/reads", reads(gw, 102, [("C-B", T0, 13.0), ("C-B", UNTIMELY, 0.5)]))
            publish(f"aquami/v1/{gw}/reads", b"not JSON")
            publish(f"aquami/v1/{gw}/reads", reads(gw, 103, [("C-D", T0, 2.0)]))
            wait_for(
                lambda: collector.counters.snapshot()["database_errors"] > before["database_errors"], 30, "refused"
            )
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        stored = "SELECT count(*) FROM readings WHERE meter_id LIKE 'C-%'"
        wait_for(lambda: count(url, stored) == (2 if refused else 3), 30, "the readings")
        letters = 4 if refused else 3
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") - letters_before == letters, 30, "letters")
        wait_for(lambda: collector.counters.snapshot()["messages"] - before["messages"] >= 4, 30, "4 messages")
        after = collector.counters.snapshot()
    counted = {k: after[k] - before[k] for k in ("messages", "dead_letters", "readings_received", "readings_stored")}
    # received: every reading of the three valid messages, the untimely and the refused included
    # (before: only those written, 3 at once and 2 message by message)
    expected = {"messages": 4, "dead_letters": letters, "readings_received": 5, "readings_stored": 2 if refused else 3}
    assert counted == expected
    # each refused reading is in one dead letter: the one the database refused is its message less the
    # untimely reading, which is a letter of its own (before, in both)
    with psycopg.connect(url) as conn:
        payloads = [bytes(row[0]) for row in conn.execute("SELECT payload FROM dead_letters WHERE payload LIKE '%C-%'")]
    lettered = sorted((r["meter_id"], r["volume_m3"]) for p in payloads for r in json.loads(p)["readings"])
    assert lettered == sorted([("C-A", 0.5), ("C-B", 0.5), *([("C-B", 13.0)] if refused else [])])


def test_readings_refused_for_their_gateway_are_counted_as_received(migrated_database_url, mosquitto):
    """A gateway overhearing another's meter: its reading of it is a dead letter, counted as received
    and not stored. Before, ``readings_received`` counted only the reading written (1 of 2)."""
    url, gw = migrated_database_url, "gw-cr"
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, ["CR-THEIRS"], ["gw-other"], "test", add=False)
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        before = collector.counters.snapshot()
        publish(f"aquami/v1/{gw}/reads", reads(gw, 201, [("CR-OWN", T0, 1.0), ("CR-THEIRS", T0, 2.0)]))
        wait_for(lambda: collector.counters.snapshot()["messages"] > before["messages"], 30, "the message")
        after = collector.counters.snapshot()
    keys = ("messages", "readings_received", "readings_stored", "duplicates", "dead_letters")
    counted = {k: after[k] - before[k] for k in keys}
    assert counted == {"messages": 1, "readings_received": 2, "readings_stored": 1, "duplicates": 0, "dead_letters": 1}


def test_events_refused_for_their_gateway_are_counted_as_received(migrated_database_url, mosquitto):
    """A gateway's meter_offline of another gateway's meter is a dead letter, counted as received and
    not stored; its own meter's event is both. Before, ``events_received`` counted only the events
    written (1 of 2), as ``readings_received`` did readings."""
    url, gw = migrated_database_url, "gw-ce"
    with psycopg.connect(url) as conn:
        meter_gateways.assign(conn, ["CE-THEIRS"], ["gw-other"], "test", add=False)

    def offline(meter_id: str) -> bytes:
        event = {"gateway_id": gw, "event": "meter_offline", "ts": T0, "meter_id": meter_id, "bus": "rs485-1"}
        return json.dumps(event | {"consecutive_failures": 3, "last_good": None}).encode()

    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        before = collector.counters.snapshot()
        publish(f"aquami/v1/{gw}/events", offline("CE-OWN"))
        publish(f"aquami/v1/{gw}/events", offline("CE-THEIRS"))
        wait_for(lambda: collector.counters.snapshot()["messages"] - before["messages"] >= 2, 30, "the messages")
        after = collector.counters.snapshot()
    keys = ("messages", "events_received", "events_stored", "dead_letters")
    counted = {k: after[k] - before[k] for k in keys}
    assert counted == {"messages": 2, "events_received": 2, "events_stored": 1, "dead_letters": 1}
    assert count(url, "SELECT count(*) FROM events WHERE meter_id LIKE 'CE-%'") == 1
