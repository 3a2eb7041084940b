"""``aquami collector leave-group``: a collector retired from a shared group, its backlog stored.

On real Mosquitto (2.0.11: a group's messages go round robin to its members' sessions, connected or
not) and a real TimescaleDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aquami.mqtt import MqttEndpoint
from collector.leave_group import LeaveGroupFailed, leave_group
from collector.service import Collector, CollectorConfig
from tests.collector.test_ingest_mqtt import count, publisher, reads, wait_for

GROUP = "retire"


def _member(url: str, mqtt_url: str, client_id: str, ready: Path) -> Collector:
    config = CollectorConfig(
        url, MqttEndpoint.parse(mqtt_url), client_id=client_id, shared_group=GROUP, ready_file=ready
    )
    return Collector(config)


@contextmanager
def _started(*collectors: Collector) -> Iterator[None]:
    for collector in collectors:
        collector.start()
    try:
        for collector in collectors:
            ready = collector.config.ready_file
            assert ready is not None
            wait_for(ready.exists, 20, f"{collector.config.client_id} subscribed")
        yield
    finally:
        for collector in collectors:
            collector.stop()


def _publish_batches(mqtt_url: str, gateway: str, first: int, n: int) -> None:
    """``n`` messages of one reading each, meters L<first> … L<first + n - 1>."""
    with publisher(mqtt_url) as publish:
        for seq in range(first, first + n):
            publish(f"aquami/v1/{gateway}/reads", reads(gateway, seq, [(f"L{seq}", "2026-03-01T00:00:00Z", 1.0)]))


def _stored(url: str) -> int:
    return count(url, "SELECT count(*) FROM readings WHERE meter_id LIKE 'L%'")


def _session_present(mqtt_url: str, client_id: str) -> bool:
    """Whether the broker holds a session for ``client_id`` (asked without ending it)."""
    endpoint = MqttEndpoint.parse(mqtt_url)
    flags: list[bool] = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
    )
    client.on_connect = lambda c, u, f, r, p: flags.append(bool(f.session_present))
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        wait_for(lambda: flags, 10, "CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return flags[0]


def test_leave_group_stores_a_retired_collectors_backlog_and_the_group_then_loses_nothing(
    migrated_database_url, fresh_mosquitto, tmp_path
):
    url, mqtt_url, gw = migrated_database_url, fresh_mosquitto.url, "gw-leave"
    staying, leaving = f"stay-{uuid.uuid4().hex[:6]}", f"gone-{uuid.uuid4().hex[:6]}"
    stays = _member(url, mqtt_url, staying, tmp_path / "stays.ready")
    with _started(stays):
        with _started(_member(url, mqtt_url, leaving, tmp_path / "leaves.ready")):
            pass  # subscribed, then stopped for good: its session stays a member of the group
        _publish_batches(mqtt_url, gw, 0, 20)
        wait_for(lambda: stays.counters.snapshot()["messages"] >= 10, 20, "the staying collector's share")
        time.sleep(1.0)
        # before: every second message sits in the gone collector's session, 10 of 20 not stored
        assert _stored(url) == 10

        env = {**os.environ, "AQUAMI_DATABASE_URL": url, "AQUAMI_MQTT_URL": mqtt_url}
        aquami = os.path.join(os.path.dirname(sys.executable), "aquami")
        done = subprocess.run(
            [aquami, "collector", "leave-group", "--client-id", leaving, "--shared-group", GROUP, "--quiet", "1"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        said = json.loads(done.stdout)
        assert said["session_found"] and said["session_ended"]
        assert (said["messages"], said["readings_stored"], said["dead_letters"]) == (10, 10, 0)
        assert _stored(url) == 20  # after: 0 of 20 lost

        # the group is the staying collector alone now: every new message reaches it
        _publish_batches(mqtt_url, gw, 20, 20)
        wait_for(lambda: _stored(url) == 40, 20, "the next 20 messages, all")
        assert stays.counters.snapshot()["messages"] == 30
    assert not _session_present(mqtt_url, leaving)  # ended for good, nothing left to fill up


def test_leave_group_refuses_a_client_id_a_running_collector_holds_and_leaves_its_session(
    migrated_database_url, fresh_mosquitto, tmp_path
):
    """A collector running under the id is knocked off once, comes back and knocks leave-group off:
    nothing ended, its subscriptions kept (they are ended only after 5 s connected)."""
    url, mqtt_url, gw = migrated_database_url, fresh_mosquitto.url, "gw-busy"
    running = _member(url, mqtt_url, f"busy-{uuid.uuid4().hex[:6]}", tmp_path / "busy.ready")
    with _started(running):
        with pytest.raises(LeaveGroupFailed, match="another client connected under that id"):
            leave_group(running.config, stop=threading.Event())
        wait_for(running._client.is_connected, 20, "the running collector back")
        _publish_batches(mqtt_url, gw, 100, 4)
        wait_for(lambda: _stored(url) == 4, 20, "every message to the running collector")


def test_leave_group_stops_on_request_and_leaves_the_session(migrated_database_url, fresh_mosquitto, tmp_path):
    url, mqtt_url = migrated_database_url, fresh_mosquitto.url
    member = _member(url, mqtt_url, f"halt-{uuid.uuid4().hex[:6]}", tmp_path / "halt.ready")
    with _started(member):
        pass
    stop = threading.Event()
    stop.set()
    with pytest.raises(LeaveGroupFailed, match="it is not ended"):
        leave_group(member.config, stop=stop)
    assert _session_present(mqtt_url, member.config.client_id)


def test_leave_group_says_why_it_failed_once(migrated_database_url, fresh_mosquitto, tmp_path):
    """The command's failure (here: a collector running under the id) is said once, in its
    ``error: …`` line. Before, the collector's own "…: the collector stops" line said it first."""
    url, mqtt_url = migrated_database_url, fresh_mosquitto.url
    running = _member(url, mqtt_url, f"twice-{uuid.uuid4().hex[:6]}", tmp_path / "twice.ready")
    with _started(running):
        env = {**os.environ, "AQUAMI_DATABASE_URL": url, "AQUAMI_MQTT_URL": mqtt_url}
        aquami = os.path.join(os.path.dirname(sys.executable), "aquami")
        done = subprocess.run(
            [aquami, "collector", "leave-group", "--client-id", running.config.client_id, "--shared-group", GROUP],
            env=env,
            capture_output=True,
            timeout=120,
        )
        wait_for(running._client.is_connected, 20, "the running collector back")
    said = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 1, said
    assert said.count("another client connected under that id") == 1, said
    assert "the collector stops" not in said
    error_lines = [line for line in said.splitlines() if "another client connected under that id" in line]
    assert error_lines[0].startswith("error: the broker ended the connection as "), said
