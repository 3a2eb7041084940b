"""The services the suite runs on are real: TimescaleDB does hypertables, Mosquitto carries QoS 1."""

from __future__ import annotations

import queue
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import psycopg
import pytest

from tests.services import MosquittoBroker, create_database, drop_database, mqtt_handshake

pytestmark = pytest.mark.services


# --- TimescaleDB ---------------------------------------------------------------------------------


def test_server_offers_the_timescaledb_extension(timescale_admin_url: str) -> None:
    with psycopg.connect(timescale_admin_url) as conn:
        row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert row is not None, "timescaledb is not installed on the test server"
    assert int(row[0].split(".")[0]) >= 2
    assert preload is not None and "timescaledb" in preload[0]


def test_a_fresh_database_takes_a_hypertable(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()
        assert db is not None and db[0].startswith("aquami_test_")
        # Fresh means empty: no extension until we create it.
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("CREATE TABLE t (ts timestamptz NOT NULL, v double precision)")
        conn.execute("SELECT create_hypertable('t', by_range('ts', INTERVAL '1 day'))")
        conn.execute(
            "INSERT INTO t SELECT g, 1.0 FROM generate_series("
            " '2026-01-01'::timestamptz, '2026-01-03 23:00', '1 hour') AS g"
        )
        hyper = conn.execute(
            "SELECT num_chunks FROM timescaledb_information.hypertables WHERE hypertable_name = 't'"
        ).fetchone()
        total = conn.execute("SELECT count(*), sum(v) FROM t").fetchone()
    assert hyper == (3,), "three days at one-day chunks make three chunks"
    assert total == (72, 72.0)


def test_test_databases_are_private_and_dropped_even_with_open_connections(timescale_admin_url: str) -> None:
    first, second = create_database(timescale_admin_url), create_database(timescale_admin_url)
    assert first != second
    left_open = psycopg.connect(first)  # a test that forgot to close its connection
    try:
        drop_database(timescale_admin_url, first)
        drop_database(timescale_admin_url, second)
    finally:
        left_open.close()
    with psycopg.connect(timescale_admin_url) as conn:
        names = [psycopg.conninfo.conninfo_to_dict(u)["dbname"] for u in (first, second)]
        still = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)).fetchall()
    assert still == []


# --- Mosquitto -----------------------------------------------------------------------------------


@contextmanager
def mqtt_client(broker: MosquittoBroker, name: str) -> Iterator[mqtt.Client]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def qos1_round_trip(broker: MosquittoBroker, payload: bytes) -> mqtt.MQTTMessage:
    """Publish at QoS 1 from one client, receive it on another; return what arrived."""
    topic = f"aquami/v1/test-{uuid.uuid4().hex[:8]}/reads"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed: queue.Queue[int] = queue.Queue()
    with mqtt_client(broker, "sub") as sub, mqtt_client(broker, "pub") as pub:
        sub.on_message = lambda _c, _u, msg: received.put(msg)
        sub.on_subscribe = lambda _c, _u, mid, codes, _p: subscribed.put(codes[0].value)
        sub.subscribe(topic, qos=1)
        assert subscribed.get(timeout=5) == 1, "the broker granted QoS 1"
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), "no PUBACK from the broker"
        return received.get(timeout=5)


def test_mosquitto_passes_a_qos1_message_between_two_clients(mosquitto: MosquittoBroker) -> None:
    msg = qos1_round_trip(mosquitto, b'{"batch_seq": 1}')
    assert msg.payload == b'{"batch_seq": 1}'
    assert msg.qos == 1
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"


def test_a_broker_restarts_on_the_same_port_and_works_again(fresh_mosquitto: MosquittoBroker) -> None:
    port = fresh_mosquitto.port
    assert qos1_round_trip(fresh_mosquitto, b"before").payload == b"before"

    fresh_mosquitto.stop()
    assert not fresh_mosquitto.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fresh_mosquitto.host, port), timeout=1).close()

    fresh_mosquitto.start()
    assert fresh_mosquitto.port == port
    assert qos1_round_trip(fresh_mosquitto, b"after").payload == b"after"

    fresh_mosquitto.kill()
    assert not mqtt_handshake(fresh_mosquitto.host, port)
    fresh_mosquitto.restart()
    assert fresh_mosquitto.port == port
    assert qos1_round_trip(fresh_mosquitto, b"after a crash").payload == b"after a crash"


def test_a_persistent_broker_keeps_retained_messages_across_a_restart() -> None:
    with MosquittoBroker(persistence=True) as broker:
        topic = "aquami/v1/gw-1/status"
        with mqtt_client(broker, "pub") as pub:
            pub.publish(topic, b"online", qos=1, retain=True).wait_for_publish(timeout=5)
        broker.restart()
        received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        with mqtt_client(broker, "sub") as sub:
            sub.on_message = lambda _c, _u, msg: received.put(msg)
            sub.subscribe(topic, qos=1)
            msg = received.get(timeout=5)
    assert (msg.payload, msg.retain) == (b"online", True)
