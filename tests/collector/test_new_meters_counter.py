"""The collector's ``new_meters`` counter: the ``meters`` rows its committed writes created, each once.

Through a real Mosquitto and TimescaleDB, in the ways a meter could be counted twice: heard from two
gateways by two collectors of a shared group at once, by a reading and a meter event in one batch,
again in later batches and redeliveries, and in a batch that the database refused and that was then
stored message by message (the refused message's meters not created at all).
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest

from aquami.mqtt import MqttEndpoint
from collector.service import Collector, CollectorConfig
from collector.store import ReadingStore
from tests.collector.test_ingest_mqtt import (
    _ready,
    _refuse_writes,
    count,
    publisher,
    reads,
    running_collector,
    wait_for,
)

METERS = "SELECT count(*) FROM meters"


def offline(gateway: str, meter_id: str, ts: str) -> bytes:
    """A ``meter_offline`` event of ``meter_id`` (aquami/contracts/events.schema.json)."""
    event = {"gateway_id": gateway, "event": "meter_offline", "ts": ts, "meter_id": meter_id}
    return json.dumps(event | {"bus": "b", "consecutive_failures": 2, "last_good": None}).encode()


def test_two_collectors_of_a_group_count_each_meter_they_created_once(migrated_database_url, fresh_mosquitto):
    """Two gateways report 30 meters, 20 of them both, to two collectors sharing the batches: each
    meter by readings over 8 rounds (redelivered once) and by a meter event in the same rounds. The
    collectors' ``new_meters`` add up to the rows in ``meters``: 30, each counted by one of them."""
    url = migrated_database_url
    endpoint = MqttEndpoint.parse(fresh_mosquitto.url)
    collectors = [
        Collector(CollectorConfig(url, endpoint, client_id=f"nm-{i}-{uuid.uuid4().hex[:6]}", shared_group="nm"))
        for i in range(2)
    ]
    for collector in collectors:
        collector.start()
    heard = {"gw-n1": [f"N{m:02d}" for m in range(20)], "gw-n2": [f"N{m:02d}" for m in range(10, 30)]}
    received = lambda: sum(c.counters.snapshot()["messages"] for c in collectors)  # noqa: E731
    published = 0
    try:
        with publisher(fresh_mosquitto.url) as publish:
            wait_for(lambda: all(c._client.is_connected() for c in collectors), 20, "both collectors")
            time.sleep(1.0)  # their SUBSCRIBEs: a message before them reaches neither
            for seq in range(8):
                ts = f"2026-03-01T{seq:02d}:00:00Z"
                for gateway, meters in heard.items():
                    message = reads(gateway, seq, [(m, ts, 1.0 + seq) for m in meters])
                    publish(f"aquami/v1/{gateway}/reads", message)
                    if seq == 3:  # a redelivery: the same batch again
                        publish(f"aquami/v1/{gateway}/reads", message)
                        published += 1
                    publish(f"aquami/v1/{gateway}/events", offline(gateway, meters[seq], ts))
                    published += 2
            wait_for(lambda: received() >= published, 30, "every message")
    finally:
        for collector in collectors:
            collector.stop()
    counted = [c.counters.snapshot()["new_meters"] for c in collectors]
    assert count(url, METERS) == 30
    assert sum(counted) == 30, counted


def test_a_batch_refused_then_stored_message_by_message_counts_the_meters_it_created_once(
    migrated_database_url, mosquitto
):
    """Four messages wait in one batch while the database takes no writes; one message's reading is
    refused (a CHECK this test adds), so the batch is rolled back and stored message by message: the
    refused message's meter (R-B) is never created, the others once. Counted: the probe's meter, R-A,
    R-C and R-D (heard only by its meter event), as in ``meters``; not R-E, registered before it was
    heard. A collector started afterwards (a restart) hearing R-A again counts only its own probe's."""
    url, gw = migrated_database_url, "gw-nr"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    at = "2026-03-01T00:00:00Z"
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("INSERT INTO meters (meter_id, registered) VALUES ('R-E', true)")  # as meterization does
            admin.execute("ALTER TABLE readings ADD CONSTRAINT no_13 CHECK (volume_m3 <> 13)")
            _refuse_writes(admin, name)
            errors = collector.counters.snapshot()["database_errors"]
            publish(f"aquami/v1/{gw}/reads", reads(gw, 101, [("R-A", at, 1.0), ("R-E", at, 4.0)]))
            publish(f"aquami/v1/{gw}/reads", reads(gw, 102, [("R-B", at, 13.0)]))
            publish(f"aquami/v1/{gw}/events", offline(gw, "R-D", at))
            publish(f"aquami/v1/{gw}/reads", reads(gw, 103, [("R-C", at, 2.0), ("R-A", "2026-03-01T01:00:00Z", 1.5)]))
            wait_for(lambda: collector.counters.snapshot()["database_errors"] > errors, 30, "writes refused")
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 1, 30, "R-B's dead letter")
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'R-%'") == 4, 30, "the rest")
        counted = collector.counters.snapshot()["new_meters"]
    with psycopg.connect(url) as conn:
        meters = sorted(m for (m,) in conn.execute("SELECT meter_id FROM meters").fetchall())
    assert meters == sorted([f"{gw}-probe", "R-A", "R-C", "R-D", "R-E"])
    assert counted == 4  # all but R-E
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, "gw-nr2")
        publish(f"aquami/v1/{gw}/reads", reads(gw, 104, [("R-A", "2026-03-01T02:00:00Z", 2.0)]))
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'R-A'") == 3, 30, "R-A again")
        assert collector.counters.snapshot()["new_meters"] == 1  # gw-nr2's probe meter


@pytest.mark.parametrize("trust_all_gateways", [False, True], ids=["gateways-checked", "trust-all-gateways"])
def test_meters_removed_under_a_running_collector_are_registered_again(
    migrated_database_url, mosquitto, trust_all_gateways
):
    """``meters`` emptied while the collector runs (a database reset under it, or an operator
    deleting meters): the meters it has heard are registered again when next heard, and their
    readings stored. Before, it took them for registered; their claim broke the foreign key of
    ``meter_gateways``, and each message with one was a dead letter, its new meters' readings too.
    With ``--trust-all-gateways`` nothing trips (no claim of a known meter): their readings were
    stored with no ``meters`` row (3 of the 5 meters), until the collector restarted."""
    url, gw = migrated_database_url, "gw-nx"
    at = "2026-03-01T{:02d}:00:00Z"
    checked = not trust_all_gateways
    with (
        running_collector(url, mosquitto.url, check_meter_gateways=checked) as collector,
        publisher(mosquitto.url) as publish,
    ):
        _ready(publish, url, gw)
        publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [(f"X{i}", at.format(0), 1.0) for i in range(3)]))
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'X%'") == 3, 20, "X0-X2")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("TRUNCATE readings, meters CASCADE")
        publish(f"aquami/v1/{gw}/reads", reads(gw, 2, [(f"X{i}", at.format(1), 2.0) for i in range(5)]))
        later = f"SELECT count(*) FROM readings WHERE ts = '{at.format(1)}'"
        wait_for(lambda: count(url, later) == 5 or count(url, "SELECT count(*) FROM dead_letters"), 20, "message 2")
        stored = count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'X%'")
        letters = count(url, "SELECT count(*) FROM dead_letters")
        counted = collector.counters.snapshot()["new_meters"]
    orphans = count(
        url,
        "SELECT count(DISTINCT meter_id) FROM readings r WHERE NOT EXISTS "
        "(SELECT 1 FROM meters m WHERE m.meter_id = r.meter_id)",
    )
    assert (stored, letters, count(url, METERS), orphans) == (5, 0, 5, 0)
    assert counted == 4 + 5  # the probe's and X0-X2 before, X0-X4 created again
    claimed = "SELECT count(*) FROM meter_gateways WHERE meter_id LIKE 'X%' AND gateway_id = 'gw-nx'"
    assert count(url, claimed) == 5  # assigned as first heard, so the check can be turned on later


def test_rows_stored_for_meters_removed_since_give_them_their_meters_rows_again(migrated_database_url):
    """The same through :meth:`ReadingStore.write` (rows given as they are, not held to gateways):
    a meter written before ``meters`` was emptied gets its row again with its next reading. Before,
    the writer took it for registered and stored the reading alone."""
    url = migrated_database_url
    store = ReadingStore(url)
    try:
        store.write([("W1", "2026-03-01T00:00:00Z", "1", None, None, [], "gw-w", 1)])
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("TRUNCATE readings, meters CASCADE")
        at = "2026-03-01T01:00:00Z"
        outcome = store.write([(m, at, "2", None, None, [], "gw-w", 2) for m in ("W1", "W2")])
    finally:
        store.close()
    assert (outcome.inserted, outcome.new_meters) == (2, 2)
    with psycopg.connect(url) as conn:
        meters = conn.execute("SELECT meter_id, has_readings FROM meters ORDER BY 1").fetchall()
    assert meters == [("W1", True), ("W2", True)]
