"""Gateways' own status through a real Mosquitto: the collector keeps each gateway's link state
(``online``, ``offline`` when it stops or as its last will) and a summary of its health, and the API
lists them. Before, the collector did not subscribe to them: a gateway gone dead reached no one."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from aquami.mqtt import MqttEndpoint
from collector.batch_parser import RejectedMessage
from collector.gateway_status import GatewayStatus, parse_status_message
from gateway.config import parse_config_text
from gateway.service import Gateway
from server.app import create_app
from server.auth import create_api_key
from simulators.modbus_tcp import ModbusTcpSimulator
from tests.collector.test_ingest_mqtt import running_collector, wait_for
from tests.gateway.helpers import config_text, meters, running
from tests.services import free_port

AT = datetime(2026, 3, 1, tzinfo=UTC)


def status_row(url: str, gateway_id: str) -> tuple | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT online, link_since, health, health_at FROM gateway_status WHERE gateway_id = %s", (gateway_id,)
        ).fetchone()


def test_a_gateway_s_link_and_health_are_kept_and_listed(tmp_path: Path, migrated_database_url: str, mosquitto):
    url, gw, port = migrated_database_url, f"gw-status-{uuid.uuid4().hex[:6]}", free_port()
    text = config_text(
        mosquitto.url,
        {"b": port},
        {"b": [1, 2]},
        str(tmp_path / "spool.sqlite"),
        gateway_id=gw,
        poll_interval_s=1.0,
        extra_top="[health]\nstatus_interval_s = 0.5\n",
    )

    def healthy() -> bool:
        row = status_row(url, gw)
        return row is not None and row[0] is True and row[2] is not None and row[2]["meters_total"] == 2

    async def scenario() -> None:
        simulator = ModbusTcpSimulator(meters(2), port=port)
        await simulator.start()
        try:
            async with running(Gateway(parse_config_text(text)), drain_timeout=5.0):
                await asyncio.to_thread(wait_for, healthy, 30, "the gateway online with its health")
        finally:
            await simulator.stop()

    with running_collector(url, mosquitto.url):
        asyncio.run(scenario())
        wait_for(lambda: (status_row(url, gw) or (None,))[0] is False, 20, "the gateway offline after its stop")
    online, link_since, health, health_at = status_row(url, gw) or (None, None, None, None)
    assert online is False and link_since is not None and health_at is not None
    assert health["gateway_id"] == gw and health["meters_offline"] == 0 and "meters" not in health
    assert health["buses"]["b"]["attempts"] >= 1

    with running_collector(url, mosquitto.url):  # a collector restarting hears the retained status again
        wait_for(lambda: (status_row(url, gw) or (None, None, None, None))[3] != health_at, 20, "retained health")
    again = status_row(url, gw)
    assert again is not None and again[0] is False and again[1] == link_since  # the same state: not moved

    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "test reader", ["reader"])
    with TestClient(create_app(url)) as client:
        listed = client.get("/gateways", headers={"Authorization": f"Bearer {key}"})
        assert client.get("/gateways").status_code == 401
    assert listed.status_code == 200, listed.text
    mine = next(g for g in listed.json() if g["gateway_id"] == gw)
    assert mine["online"] is False and mine["health"]["meters_total"] == 2 and "meters" not in mine
    assert health["events_not_spooled"] == 0 and mine["health"]["events_not_spooled"] == 0  # passed through


def test_a_gateway_lost_by_the_broker_is_offline_by_its_last_will(migrated_database_url: str, mosquitto):
    url, gw = migrated_database_url, f"gw-will-{uuid.uuid4().hex[:6]}"
    endpoint = MqttEndpoint.parse(mosquitto.url)
    topic = f"aquami/v1/{gw}/status"
    with running_collector(url, mosquitto.url):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gw)
        client.will_set(topic, b"offline", qos=1, retain=True)
        client.connect(endpoint.host, endpoint.port, keepalive=5)
        client.loop_start()
        client.publish(topic, b"online", qos=1, retain=True).wait_for_publish(10)
        wait_for(lambda: (status_row(url, gw) or (None,))[0] is True, 20, "the gateway online")
        client.loop_stop()
        sock = client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the link dies without a DISCONNECT: the broker sends the will
        sock.close()
        wait_for(lambda: (status_row(url, gw) or (None,))[0] is False, 30, "the will's offline")


def test_status_messages_that_break_the_contract_are_refused_with_the_reason() -> None:
    topic, health = "aquami/v1/gw-1/status", "aquami/v1/gw-1/status/health"
    assert parse_status_message(topic, b"online", AT) == GatewayStatus("gw-1", AT, online=True)
    assert parse_status_message(topic, b"offline", AT) == GatewayStatus("gw-1", AT, online=False)
    summary = parse_status_message(
        health,
        json.dumps(
            {
                "gateway_id": "gw-1",
                "spool_depth": 4,
                "meters": {"A": {"offline": True, "consecutive_failures": 3}, "B": {"consecutive_failures": 0}},
                "meters_omitted": 10,
            }
        ).encode(),
        AT,
    )
    assert isinstance(summary, GatewayStatus) and summary.health == {
        "gateway_id": "gw-1",
        "spool_depth": 4,
        "meters_total": 12,
        "meters_offline": 1,
        "meters_failing": 1,
    }
    for where, payload, reason in [
        (topic, b"up", "'online' or 'offline'"),
        ("aquami/v1/gw 1/status", b"online", "not an identifier"),
        (health, b"{", "not JSON"),
        (health, b'{"gateway_id": "gw-2"}', "the topic's gateway_id"),
        (health, b'{"gateway_id": "gw-1", "meters": [1]}', "an object of objects"),
        (health, b'{"gateway_id": "gw-1", "meters_omitted": -1}', "a count"),
        (health, json.dumps({"gateway_id": "gw-1", "x": "y" * 70_000}).encode(), "over 65536 bytes"),
    ]:
        refused = parse_status_message(where, payload, AT)
        assert isinstance(refused, RejectedMessage) and reason in refused.reason, (payload[:40], refused)


@given(
    kind=st.sampled_from(["status", "status/health"]),
    payload=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(st.text(max_size=8), st.integers()).map(
            lambda d: json.dumps({"gateway_id": "gw-1", **d}).encode()
        ),
    ),
)
def test_any_status_payload_is_a_status_or_a_refusal(kind: str, payload: bytes) -> None:
    result = parse_status_message(f"aquami/v1/gw-1/{kind}", payload, AT)
    assert isinstance(result, GatewayStatus | RejectedMessage)
    if isinstance(result, GatewayStatus):
        assert (result.online is None) == (kind == "status/health")


def test_a_broker_refusing_only_the_status_topics_leaves_the_collector_storing(tmp_path: Path, caplog) -> None:
    """Brokers whose rules are checked at subscription (not Mosquitto's) may refuse the status
    topics to a collector's user made before they were subscribed to: reads and events must go on,
    with the collector ready (its ready file), not "nothing will be stored"."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from collector.service import Collector, CollectorConfig

    granted, refused = ReasonCode(PacketTypes.SUBACK, identifier=1), ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    ready = tmp_path / "ready"
    endpoint = MqttEndpoint.parse("mqtt://127.0.0.1:1")
    collector = Collector(CollectorConfig("postgresql://127.0.0.1:1/x", endpoint, ready_file=ready))

    caplog.set_level(logging.INFO, logger="collector.service")

    def said() -> str:  # the collector's own lines: no other component's (or test's) that happen to be caught
        return "\n".join(r.getMessage() for r in caplog.records if r.name == "collector.service")

    collector._on_subscribe(collector._client, None, 1, [granted, granted, refused, refused], None)
    assert ready.exists()
    assert "GET /gateways will not know them" in said() and "nothing will be stored" not in said()
    topics = collector.config.subscriptions
    # "subscribed to" names what the broker granted, once it has (it was said when asked, all of it)
    assert f"subscribed to {', '.join(topics[:2])} on mqtt://127.0.0.1:1" in said().splitlines()
    ready.unlink()
    caplog.clear()
    collector._on_subscribe(collector._client, None, 2, [granted, refused, granted, granted], None)
    assert not ready.exists() and "nothing will be stored" in said()
    assert "subscribed to" not in said()
