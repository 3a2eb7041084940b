"""A database that stops answering without closing the connection: ingest says so and goes on."""

from __future__ import annotations

import logging
import threading
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aquami.mqtt import MqttEndpoint
from collector import db
from collector.service import Collector, CollectorConfig
from tests.collector.freezing_proxy import FreezingProxy
from tests.collector.test_ingest_mqtt import _ready, count, publisher, reads, wait_for


def test_a_database_connection_that_stops_answering_is_given_up_and_ingest_goes_on(
    migrated_database_url, mosquitto, caplog
):
    """Frozen without a RST, the writer's connection kept the collector waiting for hours, storing
    nothing and logging nothing. Now the write is cut after twice the statement timeout, said as
    "database unavailable", and retried on a new connection."""
    caplog.set_level(logging.WARNING)
    url, gw = migrated_database_url, "gw-hang"
    params = conninfo_to_dict(url)
    with FreezingProxy(str(params.get("host", "127.0.0.1")), int(str(params.get("port") or 5432))) as proxy:
        proxied = make_conninfo(url, host="127.0.0.1", port=proxy.port)
        config = CollectorConfig(
            proxied, MqttEndpoint.parse(mosquitto.url), client_id=f"hang-{uuid.uuid4().hex[:8]}", statement_timeout_s=1
        )
        collector = Collector(config)
        collector.start()
        try:
            with publisher(mosquitto.url) as publish:
                _ready(publish, url, gw)
                proxy.freeze()
                publish(f"aquami/v1/{gw}/reads", reads(gw, 1, [("H1", "2026-03-01T00:00:00Z", 1.5)]))
                wait_for(lambda: count(url, "SELECT count(*) FROM readings WHERE meter_id = 'H1'") == 1, 20, "the read")
        finally:
            collector.stop()
    assert collector.counters.database_errors >= 1
    assert any("database unavailable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["connect_timeout", "keepalives_idle", "tcp_user_timeout"])
def test_the_writer_s_connection_bounds_its_waits(migrated_database_url, name):
    conn = db.connect(migrated_database_url, statement_timeout_s=7)
    try:
        assert conn.info.get_parameters()[name] == str(db.CONNECTION_DEFAULTS[name])
        assert conn.execute("SHOW statement_timeout").fetchone() == ("7s",)
    finally:
        conn.close()


def test_a_periodic_job_s_connection_is_cut_when_the_database_stops_answering(migrated_database_url):
    """Detection and VEE rounds run on ``db.job_connection``: frozen mid-statement, the job fails
    with ``OperationalError`` after twice its statement timeout instead of holding its thread (and
    every later run, which waits for it) for ever."""
    params = conninfo_to_dict(migrated_database_url)
    outcome: list[BaseException | None] = []

    def job(port: int, proxy: FreezingProxy) -> None:
        try:
            with db.job_connection(make_conninfo(migrated_database_url, host="127.0.0.1", port=port), 1) as conn:
                conn.execute("SELECT 1")
                proxy.freeze()
                conn.execute("SELECT 2")
            outcome.append(None)
        except BaseException as error:  # the test reports whatever ended the job
            outcome.append(error)

    with FreezingProxy(str(params.get("host", "127.0.0.1")), int(str(params.get("port") or 5432))) as proxy:
        worker = threading.Thread(target=job, args=(proxy.port, proxy), daemon=True)
        worker.start()
        worker.join(60)  # the cut comes after 2 s; without it the job waits for ever
    assert not worker.is_alive(), "the job still waits on a database that stopped answering"
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.OperationalError), outcome
