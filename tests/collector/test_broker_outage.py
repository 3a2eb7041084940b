"""What the collector says about its broker, and its ready file while the broker is away.

Before, nothing was said: with nothing listening, or a host name that does not resolve, 62 s gave
two "counters" lines; through a 2-minute broker outage not a line, and the ready file stayed, so
docker-compose's healthcheck (``test -f`` the file) called the collector healthy throughout."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from aquami.mqtt import MqttEndpoint
from collector.service import Collector, CollectorConfig
from tests.collector.test_ingest_mqtt import wait_for
from tests.services import free_port
from tests.strict_broker import StrictBroker
from tests.tcp_cut_proxy import CutProxy


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "collector.service" and text in r.getMessage()]


def test_a_broker_not_there_is_said_once_with_the_reason_not_at_every_retry(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{free_port()}")
    collector = Collector(
        CollectorConfig("postgresql://127.0.0.1:1/x", endpoint, client_id="t-none", ready_file=tmp_path / "ready")
    )
    collector.start()
    try:
        time.sleep(5)  # paho tries again after 1, 2 and 4 s
    finally:
        collector.stop()
    said = _said(caplog, "unavailable")
    assert said == [f"MQTT broker {endpoint.url} unavailable (cannot connect: [Errno 111] Connection refused)"]
    assert not (tmp_path / "ready").exists()


def test_a_broker_outage_is_said_at_its_start_and_end_and_the_ready_file_goes_meanwhile(
    migrated_database_url: str, fresh_mosquitto: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    ready = tmp_path / "ready"
    endpoint = MqttEndpoint.parse(fresh_mosquitto.url)
    config = CollectorConfig(
        migrated_database_url,
        endpoint,
        client_id=f"t-{uuid.uuid4().hex[:8]}",
        ready_file=ready,
        broker_settle_s=1.0,  # 90 s by default
    )
    collector = Collector(config)
    collector.start()
    try:
        wait_for(ready.exists, 30, "the ready file")
        fresh_mosquitto.stop()
        wait_for(lambda: not ready.exists(), 10, "the ready file to go with the broker")
        time.sleep(5)  # several failed tries
        assert _said(caplog, "unavailable") == [
            f"MQTT broker {endpoint.url} unavailable (connection lost: Unspecified error)"
        ]
        fresh_mosquitto.start()
        wait_for(ready.exists, 40, "the ready file back with the broker")
        wait_for(lambda: _said(caplog, "available again"), 10, "the broker said back once settled")
    finally:
        collector.stop()
    (back,) = _said(caplog, "available again")
    assert back.startswith(f"MQTT broker {endpoint.url} available again after ")
    assert len(_said(caplog, "unavailable")) == 1


def test_a_link_that_drops_every_connection_is_one_outage_said_back_once_it_stays_up(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Each connection accepted, then cut (a RST) once subscribed, eight times: one warning, at the
    first drop, and "available again" once the link has stayed up ``settle_s`` (here 2 s, 90 s by
    default: what the gateway does of its broker), the drops counted. Before: "unavailable"
    (WARNING) and "available again" at every drop, and "subscribed to" at every connection: for a
    link dropped every 10 s, 360 warnings an hour (``benchmarks/collector_flapping_broker_log_lines.py``)."""
    caplog.set_level(logging.INFO)
    ready = tmp_path / "ready"
    with CutProxy(mosquitto.port, name="flapping") as proxy:
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{proxy.port}")
        config = CollectorConfig(
            migrated_database_url,
            endpoint,
            client_id=f"t-{uuid.uuid4().hex[:8]}",
            ready_file=ready,
            broker_settle_s=2.0,
        )
        collector = Collector(config)
        collector.start()
        try:
            for _ in range(8):
                wait_for(ready.exists, 30, "subscribed")
                time.sleep(0.2)
                assert proxy.drop() == 1
                last_drop = time.monotonic()
                wait_for(lambda: not ready.exists(), 10, "the drop seen")
            wait_for(lambda: _said(caplog, "available again"), 20, "the link said back")
            said_back = time.monotonic()
        finally:
            collector.stop()
    records = [r for r in caplog.records if r.name == "collector.service" and "available" in r.getMessage()]
    said = [r.getMessage() for r in records]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO], said
    assert said[0] == f"MQTT broker {endpoint.url} unavailable (connection lost: [Errno 104] Connection reset by peer)"
    assert said[1].startswith(f"MQTT broker {endpoint.url} available again after ") and said[1].endswith(
        ", 8 failures, 7 drops"
    ), said  # the first drop began the outage; 7 more
    assert said_back - last_drop >= 2.0, "said back only once the link had stayed up 2 s"
    alerting = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert alerting == [said[0]], alerting
    # at the first connection and the outage's first reconnection (the broker back, as far as then
    # known), not at the 7 after it: before, one a connection (9)
    subscribed = [r for r in caplog.records if r.getMessage().startswith("subscribed to ")]
    assert len(subscribed) == 2, [r.getMessage() for r in subscribed]


def test_a_connection_reset_is_said_with_its_reason_and_paho_s_own_error_is_no_error(
    migrated_database_url: str, mosquitto: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A NAT or a firewall resetting the connection: the outage said "connection lost: Unspecified
    error" (all paho tells on_disconnect), the reason nowhere in the collector's log."""
    caplog.set_level(logging.DEBUG)
    ready = tmp_path / "ready"
    with CutProxy(mosquitto.port, name="reset") as proxy:
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{proxy.port}")
        config = CollectorConfig(
            migrated_database_url, endpoint, client_id=f"t-{uuid.uuid4().hex[:8]}", ready_file=ready
        )
        collector = Collector(config)
        collector.start()
        try:
            wait_for(ready.exists, 30, "the ready file")
            assert proxy.drop() == 1
            wait_for(lambda: _said(caplog, "unavailable"), 10, "the outage said")
        finally:
            collector.stop()
    assert _said(caplog, "unavailable") == [
        f"MQTT broker {endpoint.url} unavailable (connection lost: [Errno 104] Connection reset by peer)"
    ]
    paho = [r for r in caplog.records if r.name == "paho" and "Connection reset by peer" in r.getMessage()]
    assert paho and all(r.levelno == logging.DEBUG for r in paho)


@pytest.mark.services
def test_a_broker_refusing_the_client_id_says_which_and_what_to_do(
    mosquitto: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A broker holding client ids to MQTT's guaranteed 23 letters and digits refused the group's
    default aquami-collector-HOSTNAME; the log said only "Client identifier not valid"."""
    caplog.set_level(logging.INFO)
    long_id = "aquami-collector-collector-host-01.example"
    with StrictBroker(mosquitto.port) as broker:
        endpoint = MqttEndpoint.parse(broker.url)
        collector = Collector(CollectorConfig("postgresql://127.0.0.1:1/x", endpoint, client_id=long_id))
        collector.start()
        try:
            wait_for(lambda: bool(_said(caplog, "unavailable")), 30, "the refusal said")
        finally:
            collector.stop()
    (said,) = _said(caplog, "unavailable")
    assert said == (
        f"MQTT broker {endpoint.url} unavailable (refused the connection: Client identifier not valid "
        f"(client id '{long_id}', 42 characters: a broker need take only 1 to 23 letters and digits; "
        "give one such with --client-id, the same at every start))"
    )


def test_a_stop_says_no_paho_error(mosquitto: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Stopped, the collector sent its DISCONNECT while paho's network thread still ran, whose last
    turn could find the socket closed: "Client is not connected" at ERROR, at 3 of 5 stops here,
    once paho's log reached the collector's (aquami.paho_log)."""
    caplog.set_level(logging.DEBUG, logger="paho")
    endpoint = MqttEndpoint.parse(mosquitto.url)
    for n in range(5):
        config = CollectorConfig("postgresql://127.0.0.1:1/x", endpoint, client_id=f"t-stop-{uuid.uuid4().hex[:8]}")
        collector = Collector(config)
        collector.start()
        wait_for(lambda: any("Received CONNACK" in r.getMessage() for r in caplog.records), 10, "a connection")
        time.sleep(1.0)  # running a while: its network thread waits in its loop's select
        collector.stop()
        said = [r.getMessage() for r in caplog.records if r.name == "paho" and r.levelno >= logging.WARNING]
        assert said == [], f"stop {n + 1}: {said}"
        sent = [r.getMessage() for r in caplog.records if r.name == "paho" and "Sending DISCONNECT" in r.getMessage()]
        assert len(sent) == 1, "the DISCONNECT not sent: the broker would see the connection drop"
        caplog.clear()
