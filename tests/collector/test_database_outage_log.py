"""What the collector logs while its database is away: a line when it goes, a reminder every 5
minutes, a line when it is back. Before, one warning a second, each two lines (psycopg's message
holds a newline): 121 in a 2-minute outage, and nothing said at its end (t1_db_outage.sh)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.collector.test_ingest_mqtt import (
    _ready,
    _refuse_writes,
    count,
    publisher,
    reads,
    running_collector,
    wait_for,
)
from tests.services import LOOPBACK
from tests.tcp_cut_proxy import CutProxy


def test_a_database_outage_is_one_line_at_its_start_and_one_at_its_end(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url, gw = migrated_database_url, "gw-dblog"
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with (
        running_collector(url, mosquitto.url, database_settle_s=1.0) as collector,  # 90 s by default
        publisher(mosquitto.url) as publish,
    ):
        _ready(publish, url, gw)
        with psycopg.connect(url, autocommit=True) as admin:
            _refuse_writes(admin, name)
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("D1", "2026-03-01T00:00:00Z", 2.5)]))
            wait_for(lambda: collector.counters.database_errors >= 4, 30, "writes refused, again and again")
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'D1'") == 1, 30, "the read")
        wait_for(lambda: not collector.database.ongoing, 10, "the database said back, 1 s after")
    said = [r.getMessage() for r in caplog.records if r.name == "collector.service" and "database" in r.getMessage()]
    assert len(said) == 2, said
    assert said[0].startswith("database unavailable (") and said[0].endswith("; 1 message waits, unacknowledged")
    assert said[1].startswith("database available again after ") and "failures" in said[1]
    assert all("\n" not in line for line in said)


def test_a_collector_waiting_for_its_database_says_why_once_not_every_5_s() -> None:
    """A role or database that does not exist was said every 5 s, for ever."""
    command = [sys.executable, "-m", "aquami", "collector", "run", "--mqtt-url", "mqtt://127.0.0.1:1"]
    env = {**os.environ, "AQUAMI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(12)  # three tries
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    lines = stderr.splitlines()
    assert len(lines) == 1, lines
    assert "WARNING collector: database unavailable (connection failed: " in lines[0]
    assert lines[0].endswith("; trying again every 5 s")


def test_a_failure_to_store_that_is_not_an_outage_is_one_traceback_not_one_a_second(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure that is not the database being away (here a trigger the utility's DBA added that
    raises; a bug would do the same) was logged with its traceback every second the messages
    waited. Now the traceback once, a reminder every 5 minutes, and a line when storing works again;
    the message waits unacknowledged meanwhile and is stored then."""
    caplog.set_level(logging.INFO)
    url, gw = migrated_database_url, "gw-fault"
    with running_collector(url, mosquitto.url) as collector, publisher(mosquitto.url) as publish:
        _ready(publish, url, gw)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "CREATE FUNCTION refuse_meter() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'no new meters today'; END $$"
            )
            admin.execute(
                "CREATE TRIGGER refuse_meter BEFORE INSERT ON meters FOR EACH ROW EXECUTE FUNCTION refuse_meter()"
            )
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("F1", "2026-03-01T00:00:00Z", 2.5)]))
            wait_for(lambda: collector.counters.database_errors >= 4, 30, "the store failing, again and again")
            assert count(url, "SELECT count(*) FROM readings WHERE meter_id = 'F1'") == 0
            admin.execute("DROP TRIGGER refuse_meter ON meters")
        wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'F1'") == 1, 30, "the read")
    own = [r for r in caplog.records if r.name == "collector.service" and r.levelno >= logging.WARNING]
    tracebacks = [r.getMessage() for r in own if r.exc_info]
    assert tracebacks == ["could not store 1 message; it waits, unacknowledged"]
    said = [m for r in caplog.records if r.name == "collector.service" and "storing messages" in (m := r.getMessage())]
    assert len(said) == 2, said
    assert said[0].startswith("storing messages unavailable (RaiseException: no new meters today")
    assert said[1].startswith("storing messages available again after ") and "failures" in said[1]
    assert [r.levelname for r in caplog.records if "storing messages" in r.getMessage()] == ["WARNING", "INFO"]


DROPS = 6
SETTLE_S = 3.0  # longer than the link stays up between drops here (some 1.3 s)


def test_a_database_link_that_drops_again_and_again_is_one_outage_said_back_once_it_stayed_up(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A database link cut (a RST from a proxy, a firewall ending connections) every 2.5 s while the
    writer is idle: each cut fails the writer's next look, and the look after it on a new connection
    answers. Before, each drop was a WARNING "database unavailable" and an "available again" (6 and
    6 for 6 drops); now, as the broker's link, one WARNING for the episode and one "available again"
    once the link stayed up ``database_settle_s``, with the failures and drops counted."""
    caplog.set_level(logging.INFO, logger="collector.service")
    url, gw = migrated_database_url, "gw-dbflap"
    params = conninfo_to_dict(url)
    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db-flap") as link:
        proxied = make_conninfo(url, host=LOOPBACK, port=link.port)
        with (
            running_collector(proxied, mosquitto.url, database_check_s=1.0, database_settle_s=SETTLE_S) as collector,
            publisher(mosquitto.url) as publish,
        ):
            _ready(publish, url, gw)
            for _ in range(DROPS):
                assert link.drop() >= 1  # the writer's connection (and its look's, if open)
                # its next look (within 1 s idle) fails, the one after answers on a new connection
                time.sleep(2.5)
            wait_for(lambda: not collector.database.ongoing, 2 * SETTLE_S + 5, "the database said back")
            publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("DF1", "2026-03-01T00:00:00Z", 2.5)]))
            wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'DF1'") == 1, 30, "the read")
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("database ")]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
    assert said[0][1].startswith("database unavailable (") and said[0][1].endswith("; no message waits")
    assert re.fullmatch(rf"database available again after \d+ s, {DROPS} failures, {DROPS - 1} drops", said[1][1])
