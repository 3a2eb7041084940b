"""A database link that dies while the collector has nothing to store.

The writer learnt of a dead link only at its next write, which then waited for it up to its
deadline (twice the statement timeout: 60 s by default), and until then nothing said the database
was away. Through a real PostgreSQL behind a proxy that black-holes the link (nothing forwarded,
nothing closed: what a dead host, or a firewall or NAT that forgot the connection, looks like; the
proxy's kernel still acknowledges, so TCP keepalives cannot see it), and a real Mosquitto.
"""

from __future__ import annotations

import logging
import time

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aquami.mqtt import MqttEndpoint
from collector.service import CollectorConfig
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, running_collector, wait_for
from tests.services import LOOPBACK
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
    caplog.set_level(logging.WARNING, logger="collector.service")
    url, gw = migrated_database_url, "gw-idle"
    params = conninfo_to_dict(url)
    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", LOOPBACK)), name="db-link") as link:
        proxied = make_conninfo(url, host=LOOPBACK, port=link.port)
        with (
            running_collector(proxied, mosquitto.url, database_check_s=CHECK_S) as collector,
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


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("inf"), float("nan")])
def test_the_database_check_takes_a_positive_finite_interval(seconds: float) -> None:
    endpoint = MqttEndpoint.parse("mqtt://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"database check every \S+ s: give a positive number of seconds"):
        CollectorConfig("postgresql://x", endpoint, database_check_s=seconds)


def test_the_default_database_check_is_10_s() -> None:
    assert CollectorConfig("postgresql://x", MqttEndpoint.parse("mqtt://127.0.0.1:1")).database_check_s == 10.0
