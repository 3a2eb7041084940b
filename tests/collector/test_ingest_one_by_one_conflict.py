"""A batch stored message by message (the database refused one message's rows) that conflicts with
another transaction partway is tried again from the message that conflicted: the messages already
committed are neither counted again nor their dead letters written again. On a real collector, a
real broker and a real deadlock.

Before, the retry (collector/service.py, ``_store_retrying_conflicts``) stored the whole batch again:
the messages committed before the conflict were counted a second time (``messages``,
``readings_received``, their readings as ``duplicates``), and the dead letters written before it
were written again (two rows for one refused message)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for
from tests.collector.test_vee_ingest_deadlock import _waiting_on_rows

GOOD, REFUSED, REPLACING = "OBO-GOOD", "OBO-REFUSED", "OBO-REPLACING"
FIRST, EARLY, LATE = (datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (0, 1, 2))
UNTIMELY = "1999-12-31T00:00:00Z"  # before 2000: a dead letter of its own
LOCK = "SELECT 1 FROM readings WHERE meter_id = %s AND ts = %s FOR UPDATE"
COUNTERS = ("messages", "readings_received", "readings_stored", "duplicates", "dead_letters", "write_conflicts")


def test_messages_stored_before_a_conflict_are_not_counted_nor_lettered_again(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One batch of four messages (the writer waits 2 s for company): a good reading of GOOD beside
    an untimely one, a message that is not JSON, a reading of a new meter the database refuses to
    register (a CHECK this test adds: the batch is stored message by message), and REPLACING's reads
    replacing its 01:00 and 02:00 estimates. Another session holds the 02:00 estimate; the writer,
    replacing them, locks 01:00 and waits for it, and the other then asks for 01:00: the writer is
    rolled back (a deadlock) after the first three messages were committed. Each message counted
    once, each dead letter written and counted once; the conflict's warning says the 1 message tried
    again (before, the batch's 4)."""
    caplog.set_level(logging.WARNING, logger="collector.service")
    url, gw = migrated_database_url, "gw-obo"
    with running_collector(url, mosquitto.url, max_delay_s=2.0) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        publish(
            f"aquami/v1/{gw}/reads",
            reads(gw, 1, [(GOOD, FIRST.isoformat(), 1.0), (REPLACING, FIRST.isoformat(), 10.0)]),
        )
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'OBO-%'") == 2, 30, "first")
        with psycopg.connect(url) as conn:
            conn.execute(f"ALTER TABLE meters ADD CONSTRAINT not_this_one CHECK (meter_id <> '{REFUSED}')")
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) VALUES "
                "(%s, %s, 10.05, 'estimated', 'vee:linear', 'gap'), (%s, %s, 10.1, 'estimated', 'vee:linear', 'gap')",
                (REPLACING, EARLY, REPLACING, LATE),
            )
        letters_before = count(url, "SELECT count(*) FROM dead_letters")
        before = collector.counters.snapshot()
        with psycopg.connect(url) as other:
            other.execute("SET deadlock_timeout = '30s'")  # the writer (1 s, the default) finds it first
            other.execute(LOCK, (REPLACING, LATE))
            publish(f"aquami/v1/{gw}/reads", reads(gw, 2, [(GOOD, EARLY.isoformat(), 1.1), (GOOD, UNTIMELY, 0.5)]))
            publish(f"aquami/v1/{gw}/reads", b"not JSON")
            publish(f"aquami/v1/{gw}/reads", reads(gw, 3, [(REFUSED, EARLY.isoformat(), 5.0)]))
            replacing = [(REPLACING, EARLY.isoformat(), 10.1), (REPLACING, LATE.isoformat(), 10.2)]
            publish(f"aquami/v1/{gw}/reads", reads(gw, 4, replacing))
            _waiting_on_rows(url, 1)
            other.execute(LOCK, (REPLACING, EARLY))
            other.rollback()
        actual = f"SELECT count(*) FROM readings WHERE meter_id = '{REPLACING}' AND quality = 'actual'"
        wait_for(lambda: count(url, actual) == 3, 30, "the replacing reads stored")
        wait_for(lambda: collector.counters.snapshot()["messages"] - before["messages"] >= 4, 30, "4 messages")
        after = collector.counters.snapshot()
        letters = count(url, "SELECT count(*) FROM dead_letters") - letters_before
        stored = count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{GOOD}'")
    counted = {k: after[k] - before[k] for k in COUNTERS}
    # received: every reading of the three valid messages (the untimely and the refused included)
    expected = {
        "messages": 4,
        "readings_received": 5,
        "readings_stored": 3,
        "duplicates": 0,
        "dead_letters": 3,
        "write_conflicts": 1,
    }
    # the letters: GOOD's untimely read, "not JSON", REFUSED's message, each once; GOOD's 2 reads
    assert (counted, letters, stored) == (expected, 3, 2)
    conflicted = [m for r in caplog.records if " conflicted with another transaction" in (m := r.getMessage())]
    assert len(conflicted) == 1 and conflicted[0].startswith("a write of 1 message conflicted"), conflicted
