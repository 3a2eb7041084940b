"""The collector's "N messages wait" counts the messages still waiting to be stored, not those of the
batch a try message by message committed before the failure. On a real collector, a real broker and
the real database, whose trigger refuses one message's reads.

Before, the writer's lines said the whole batch (collector/service.py, ``len(pending)``): a batch of
3 whose first 2 were committed, one by one, before the third failed was "3 messages wait" (and its
traceback "could not store 3 messages"), where 1 waited."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for

GOOD, REFUSED, WAITING = "MW-GOOD", "MW-REFUSED", "MW-WAITING"
TS = "2026-03-01T00:00:00Z"


def test_a_failure_after_messages_committed_one_by_one_counts_only_those_still_waiting(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One batch of three messages (the writer waits 2 s for company): GOOD's reading, a reading of
    a new meter the database refuses to register (a CHECK: the batch is stored message by message,
    GOOD's committed, REFUSED's a dead letter, committed), and WAITING's reading, which a trigger
    refuses with an error that is no message's data (it waits, as for a bug). Said: 1 message
    waits; once the trigger is gone WAITING's reading is stored, and GOOD's once."""
    caplog.set_level(logging.INFO, logger="collector.service")
    url, gw = migrated_database_url, "gw-mwait"
    with running_collector(url, mosquitto.url, max_delay_s=2.0) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"ALTER TABLE meters ADD CONSTRAINT not_this_one CHECK (meter_id <> '{REFUSED}')")
            admin.execute(
                "CREATE FUNCTION refuse_reading() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'not this meter''s reads today'; END $$"
            )
            admin.execute(
                "CREATE TRIGGER refuse_reading BEFORE INSERT ON readings FOR EACH ROW "
                f"WHEN (NEW.meter_id = '{WAITING}') EXECUTE FUNCTION refuse_reading()"
            )
            for seq, meter in enumerate((GOOD, REFUSED, WAITING), start=1):
                publish(f"aquami/v1/{gw}/reads", reads(gw, seq, [(meter, TS, 1.0)]))
            wait_for(lambda: collector.counters.database_errors >= 2, 30, "the store failing, again and again")
            assert count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{GOOD}'") == 1
            admin.execute("DROP TRIGGER refuse_reading ON readings")
        wait_for(lambda: count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{WAITING}'") == 1, 30, "it")
    own = [r for r in caplog.records if r.name == "collector.service"]
    assert [r.getMessage() for r in own if r.exc_info] == ["could not store 1 message; it waits, unacknowledged"]
    said = [m for r in own if (m := r.getMessage()).startswith("storing messages unavailable")]
    assert len(said) == 1 and said[0].endswith("; 1 message waits"), said
    assert count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{GOOD}'") == 1
