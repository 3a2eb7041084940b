"""A database link that dies while the collector has nothing to store.

The writer learnt of a dead link only at its next write, which then waited for it up to its
deadline (twice the statement timeout: 60 s by default), and until then nothing said the database
was away. Through a real PostgreSQL behind a proxy that black-holes the link (nothing forwarded,
nothing closed: what a dead host, or a firewall or NAT that forgot the connection, looks like; the
proxy's kernel still acknowledges, so TCP keepalives cannot see it), and a real Mosquitto.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from aquami.cli import app
from aquami.mqtt import MqttEndpoint
from collector.service import CollectorConfig
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for
from tests.services import LOOPBACK, MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

CHECK_S = 1.0
STORED = "SELECT count(*) FROM readings WHERE meter_id LIKE 'I-%'"


def _said(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def test_a_database_link_dead_while_idle_is_noticed_and_replaced_and_nothing_is_lost(
    migrated_database_url: str, mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Idle, the link black-holed: "database unavailable" within twice ``database_check_s`` (before:
    not until a message came, then after the write's 60 s). Messages arriving meanwhile wait
    unacknowledged; the link back (the old connection dead for good), all are stored, and the
    database said available again."""
    caplog.set_level(logging.INFO, logger="collector.service")  # "available again" is INFO
    url, gw = migrated_database_url, "gw-idle"
    params = conninfo_to_dict(url)
    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db-link") as link:
        proxied = make_conninfo(url, host=LOOPBACK, port=link.port)
        with (
            # said back once it stayed back 1 s (90 s by default)
            running_collector(proxied, mosquitto.url, database_check_s=CHECK_S, database_settle_s=1.0) as collector,
            publisher(mosquitto.url) as publish,
        ):
            _ready(publish, url, gw)
            link.black_hole()
            start = time.monotonic()
            wait_for(lambda: _said(caplog, "database unavailable"), 10 * CHECK_S, "the dead link said")
            noticed = time.monotonic() - start
            for seq in range(3):
                publish(f"aquami/v1/{gw}/reads", reads(gw, 100 + seq, [(f"I-{seq}", "2026-03-01T00:00:00Z", 1.0)]))
            time.sleep(1.0)
            assert count(url, STORED) == 0  # (asked directly, not through the link)
            link.restore(stale=True)  # the old connection stays dead; new ones get through
            back = time.monotonic()
            wait_for(lambda: count(url, STORED) == 3, 60, "the readings that waited")
            stored = time.monotonic() - back
            wait_for(lambda: _said(caplog, "database available again"), 10, "the database said back")
            errors = collector.counters.snapshot()["dead_letters"]
    # a check after CHECK_S idle, cut after CHECK_S more; the writer looks every 0.2 s
    assert noticed <= 2 * CHECK_S + 1.5, noticed
    # a connection attempt held by the black hole at the restore ends at its connect_timeout (10 s)
    assert stored <= 15, stored
    assert errors == 0


#: longer than the test's steps between the writer's last answer and the message (well under 1 s):
#: no idle check comes between the link's death and the message
QUIET_CHECK_S = 3.0


@pytest.mark.parametrize(
    ("settings", "bound_s"),
    [
        ({"database_check_s": QUIET_CHECK_S}, QUIET_CHECK_S),
        # a check longer than a write's deadline (twice the statement timeout) waits the deadline only
        ({"database_check_s": 5.0, "statement_timeout_s": 1.0}, 2.0),
    ],
)
def test_a_message_just_after_the_link_died_waits_the_check_not_the_write_s_deadline(
    migrated_database_url: str,
    mosquitto,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, float],
    bound_s: float,
) -> None:
    """The link dies (the old connection dead for good, new ones get through: a NAT that forgot the
    connection) a moment before a message comes, under ``database_check_s``: no idle check has seen
    it. Before, the write waited on the dead connection for its deadline (twice the 30 s statement
    timeout), then a second, and the message was stored 61.2 s after it was sent (as with the
    default 10 s check, the link dead 0.3 s or 5 s before it); now the writer's look before its first
    write after an idle spell gives the connection up within ``database_check_s``, and the write
    goes on a new one."""
    caplog.set_level(logging.INFO, logger="collector.service")  # "available again" is INFO
    url, gw = migrated_database_url, "gw-died"
    params = conninfo_to_dict(url)
    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db-link") as link:
        proxied = make_conninfo(url, host=LOOPBACK, port=link.port)
        with (
            running_collector(proxied, mosquitto.url, database_settle_s=0.0, **settings),  # back said at once
            publisher(mosquitto.url) as publish,
        ):
            _ready(publish, url, gw)  # (a probe just written: the writer's last answer)
            link.black_hole()
            link.restore(stale=True)
            time.sleep(0.3)
            sent = time.monotonic()
            publish(f"aquami/v1/{gw}/reads", reads(gw, 500, [("I-late", "2026-03-01T00:00:00Z", 1.0)]))
            wait_for(lambda: count(url, STORED) == 1, 90, "the reading")
            stored = time.monotonic() - sent
    # the look's bound, a new connection, the write; the test's count every 0.05 s
    assert stored <= bound_s + 1.5, stored
    said = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("database unavailable") and m.endswith("; 1 message waits, unacknowledged") for m in said
    ), said
    assert any(m.startswith("database available again") for m in said), said


@given(st.floats(allow_nan=True, allow_infinity=True) | st.floats(min_value=0.0, max_value=4000.0))
def test_the_config_takes_exactly_checks_of_1_to_3600_s(seconds: float) -> None:
    endpoint = MqttEndpoint.parse("mqtt://127.0.0.1:1")
    if 1.0 <= seconds <= 3600.0:
        assert CollectorConfig("postgresql://x", endpoint, database_check_s=seconds).database_check_s == seconds
    else:
        with pytest.raises(ValueError, match=r"database check every \S+ s: give 1 to 3600 seconds"):
            CollectorConfig("postgresql://x", endpoint, database_check_s=seconds)


_RUN = ["collector", "run", "--database-url", "postgresql://127.0.0.1:1/x", "--mqtt-url", "mqtt://127.0.0.1:1"]
#: a ready file that cannot be: were the check not refused first, the command would stop on it (exit 1)
_NO_FOLDER = ["--ready-file", "/nonexistent-aquami-folder/ready"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "greater than or equal to 1"),
        ("0.5", "greater than or equal to 1"),
        ("-5", "greater than or equal to 1"),
        ("3601", "less than or equal to 3600"),
        ("inf", "less than or equal to 3600"),
        ("1e309", "less than or equal to 3600"),
        ("nan", "less than or equal to 3600"),
        ("abc", "a valid number"),
    ],
)
def test_a_database_check_out_of_range_is_refused_naming_the_option(value: str, says: str) -> None:
    """``collector run --database-check`` (``AQUAMI_DATABASE_CHECK``): refused before the database or
    the broker is tried (neither is there), exit 2, one message naming the option."""
    by_option = [*_RUN, *_NO_FOLDER, "--database-check", value]
    for args, env in ((by_option, None), ([*_RUN, *_NO_FOLDER], {"AQUAMI_DATABASE_CHECK": value})):
        result = CliRunner().invoke(app, args, env=env, terminal_width=400)
        said = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2, said
        assert "Invalid value for '--database-check'" in said and says in said, said
        assert "Traceback" not in said


@pytest.mark.services
def test_collector_run_s_database_check_finds_a_link_dead_while_idle_within_twice_it(
    tmp_path: Path, migrated_database_url: str, mosquitto: MosquittoBroker
) -> None:
    """``--database-check 1``: the link black-holed while the collector is idle is said within about
    2 s, where the default 10 s takes up to 20 s; before, the command had no such option."""
    ready, out = tmp_path / "ready", tmp_path / "collector.log"
    params = conninfo_to_dict(migrated_database_url)
    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db-link") as link:
        proxied = make_conninfo(migrated_database_url, host=LOOPBACK, port=link.port)
        command = [sys.executable, "-m", "aquami", "collector", "run", "--mqtt-url", mosquitto.url]
        command += ["--database-check", f"{CHECK_S:g}", "--client-id", f"dbc-{uuid.uuid4().hex[:8]}"]
        command += ["--ready-file", str(ready), "--detect-every", "0", "--vee-every", "0"]
        with open(out, "wb") as log_file:
            process = subprocess.Popen(
                command, env={**os.environ, "AQUAMI_DATABASE_URL": proxied}, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            wait_for(lambda: ready.exists() or process.poll() is not None, 60, "the collector subscribed")
            assert process.poll() is None, f"the collector exited {process.returncode}: {out.read_text()}"
            time.sleep(2.5 * CHECK_S)  # the writer's first check (after CHECK_S idle) answered: its link idle
            link.black_hole()
            start = time.monotonic()
            wait_for(lambda: "database unavailable" in out.read_text(), 10 * CHECK_S, "the dead link said")
            noticed = time.monotonic() - start
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    # a check after CHECK_S idle, cut after CHECK_S more; the writer looks every 0.2 s
    assert noticed <= 2 * CHECK_S + 1.5, (noticed, out.read_text())


def test_the_default_database_check_is_10_s() -> None:
    assert CollectorConfig("postgresql://x", MqttEndpoint.parse("mqtt://127.0.0.1:1")).database_check_s == 10.0
