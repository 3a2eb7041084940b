"""A database link that dies while the collector's writer is busy: readings keep arriving, so the
writer is never idle and its idle look (``database_check_s``) never runs.

Before, the write on the dead connection waited for its deadline (twice the 30 s statement timeout),
then a second, before the writer tried a new connection: the first reading stored after the link
died came 61.1 s later (and a broker left at Mosquitto's default queue of 1,000 messages a client,
as the tests' is, dropped what came beyond it meanwhile: the test's every reading was never stored).
Through a real PostgreSQL behind a proxy whose link is black-holed and comes back with its
connection table empty (the old connection dead for good, half-open on both sides, its packets
acknowledged by the proxy's kernel, so no TCP keepalive or ``tcp_user_timeout`` can see it; new
connections get through: a NAT or a firewall that forgot the connection), and a real Mosquitto.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector.batch_parser import ReadingRow
from collector.store import ReadingStore, StoreResult
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for
from tests.services import LOOPBACK
from tests.tcp_cut_proxy import CutProxy

CHECK_S = 2.0
#: a message every 50 ms: the writer's take of a batch (0.2 s for a first message) never comes back empty
EVERY_S = 0.05
METER = "BUSY-1"
STORED = f"SELECT count(*) FROM readings WHERE meter_id = '{METER}'"
FIRST = datetime(2026, 3, 1, tzinfo=UTC)


def _stored_from(url: str, seq: int) -> int:
    """How many of the readings published as ``seq`` or later are stored (reading ``seq`` is at
    FIRST + seq minutes)."""
    since = (FIRST + timedelta(minutes=seq)).isoformat()
    return count(url, f"SELECT count(*) FROM readings WHERE meter_id = '{METER}' AND ts >= '{since}'")


def test_a_busy_writer_s_dead_database_link_is_given_up_within_twice_the_check_and_nothing_is_lost(
    migrated_database_url: str, mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    url, gw = migrated_database_url, "gw-busy"
    params = conninfo_to_dict(url)
    published = [0]  # readings published so far; reading n is at FIRST + n minutes
    stop = threading.Event()

    def publish_steadily() -> None:
        with publisher(mosquitto.url) as publish:
            while not stop.is_set():
                ts = (FIRST + timedelta(minutes=published[0])).strftime("%Y-%m-%dT%H:%M:%SZ")
                publish(f"aquami/v1/{gw}/reads", reads(gw, 1000 + published[0], [(METER, ts, float(published[0]))]))
                published[0] += 1
                time.sleep(EVERY_S)

    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db-link") as link:
        proxied = make_conninfo(url, host=LOOPBACK, port=link.port)
        # the database said back as it answers again (by default once it stayed back 90 s)
        with running_collector(proxied, mosquitto.url, database_check_s=CHECK_S, database_settle_s=0.0) as collector:
            with publisher(mosquitto.url) as publish:
                _ready(publish, url, gw)
            steady = threading.Thread(target=publish_steadily, name="steady-publisher", daemon=True)
            steady.start()
            try:
                wait_for(lambda: _stored_from(url, 0) >= 20, 30, "the busy writer storing")
                link.black_hole()
                link.restore(stale=True)  # the writer's connection dead for good; new ones get through
                died, after = time.monotonic(), published[0]
                wait_for(lambda: _stored_from(url, after) >= 1, 90, "a reading published after the link died")
                first_stored = time.monotonic() - died
            finally:
                stop.set()
                steady.join(30)
            total = published[0]
            wait_for(lambda: count(url, STORED) == total, 30, "every reading published")
            time.sleep(1.0)  # a reading stored twice, or one more, would show now
            stored, counters = count(url, STORED), collector.counters.snapshot()
    # the writer's connection given up once the database has waited on it CHECK_S (looked at every
    # CHECK_S / 2), a second before the retry, a new connection, the write; the test's count every 0.05 s
    assert first_stored <= 2 * CHECK_S + 2.0, first_stored
    assert stored == total  # none lost (the failed write's messages waited, unacknowledged), none invented
    assert counters["dead_letters"] == 0
    assert counters["database_errors"] >= 1  # the dead connection was given up, not waited out
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("database unavailable") for m in said), said
    assert any(m.startswith("database available again") for m in said), said


def test_a_write_the_database_is_slow_on_is_not_cut_by_the_look(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The look cuts only a write whose session waits on the writer: one the database works on (here
    held 3 s by another transaction's uncommitted row of the same key, what a loaded server's slow
    batch looks like from outside: its session active) is looked at five times and finishes."""
    caplog.set_level(logging.WARNING, logger="collector")
    row: ReadingRow = ("SLOW-1", "2026-03-01T00:00:00Z", "1.000", None, None, [], "gw-slow", 1)
    store = ReadingStore(migrated_database_url, look_after_s=1.0)
    try:
        assert store.write([("SLOW-0", *row[1:])]).inserted == 1  # connected: its session known
        with psycopg.connect(migrated_database_url) as blocker:
            blocker.execute("INSERT INTO meters (meter_id) VALUES ('SLOW-1')")
            blocker.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('SLOW-1', %s, 1)", (row[1],))
            outcome: list[StoreResult] = []
            writing = threading.Thread(target=lambda: outcome.append(store.write([row])))
            started = time.monotonic()
            writing.start()
            time.sleep(3.0)
            blocker.rollback()
            writing.join(30)
            took = time.monotonic() - started
    finally:
        store.close()
    assert [result.inserted for result in outcome] == [1], caplog.text
    assert took >= 3.0
    assert [r.getMessage() for r in caplog.records] == []
