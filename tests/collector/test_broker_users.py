"""The shipped broker settings for a shared network (collector/examples/mosquitto-auth.conf and
mosquitto-aquami.acl), run on a real Mosquitto: each gateway its own user and topics, each collector
its own user, and the client id the user's name.

Before, the README asked for the users and the ACL only. Any user (a gateway's credentials taken
from its box) could then connect under a collector's client id (``aquami-collector-HOSTNAME``):
Mosquitto ended the collector's persistent session, and the readings queued in it while the
collector was away, already deleted from the gateways' spools, were lost for good."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from aquami.mqtt import MqttEndpoint, new_client
from tests.services import LOOPBACK, accepts, free_port, mosquitto_binary

EXAMPLES = Path(__file__).resolve().parents[2] / "collector" / "examples"
PASSWORDS = {"gw-a": "gw-a-secret", "gw-b": "gw-b-secret", "collector-1": "collector-secret"}
#: What the collector calls itself by default (collector run: aquami-collector-HOSTNAME in a group).
COLLECTOR_CLIENT_ID = "aquami-collector-host1"


@contextmanager
def _broker(folder: Path) -> Iterator[int]:
    """Mosquitto on a free port with the example's settings, its files in ``folder``: its port."""
    passwords = folder / "aquami.passwd"
    passwords.touch()
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True, timeout=30)
    acl = folder / "aquami.acl"
    acl.write_text((EXAMPLES / "mosquitto-aquami.acl").read_text())
    settings = (EXAMPLES / "mosquitto-auth.conf").read_text()
    settings = settings.replace("/etc/mosquitto/aquami.passwd", str(passwords))
    settings = settings.replace("/etc/mosquitto/aquami.acl", str(acl))
    port = free_port()
    lines = [f"listener {port} {LOOPBACK}", "persistence false", settings]
    if os.geteuid() == 0:
        lines.append("user root")  # as root Mosquitto would switch to its own user, who cannot read the files
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    with (folder / "mosquitto.log").open("wb") as log:
        broker = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not accepts(port):  # no anonymous CONNECT to ask with: this broker refuses it
            assert broker.poll() is None and time.monotonic() < deadline, (folder / "mosquitto.log").read_text()
            time.sleep(0.05)
        yield port
    finally:
        broker.terminate()
        broker.wait(timeout=10)


@pytest.fixture
def port() -> Iterator[int]:
    with tempfile.TemporaryDirectory(prefix="aquami-broker-users-") as folder, _broker(Path(folder)) as port:
        yield port


@dataclass
class Connected:
    """A client connected (or refused, ``refused`` saying why), its network loop running, and what
    it received."""

    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    refused: str | None = None


def _connected(client: mqtt.Client, port: int) -> Connected:
    connected = Connected(client)

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        connected.received.append((message.topic, bytes(message.payload)))

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            connected.refused = str(reason)

    client.on_message = on_message
    client.on_connect = on_connect
    client.connect(LOOPBACK, port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not client.is_connected() and connected.refused is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return connected


def _collector(port: int, topic: str = "aquami/v1/+/reads") -> Connected:
    """The collector's own MQTT client (aquami.mqtt.new_client: a persistent session), subscribed."""
    endpoint = MqttEndpoint(LOOPBACK, port, username="collector-1", password=PASSWORDS["collector-1"])
    collector = _connected(new_client(endpoint, COLLECTOR_CLIENT_ID), port)
    assert collector.client.is_connected(), collector.refused
    collector.client.subscribe(topic, qos=1)
    time.sleep(0.3)
    return collector


def _gateway(port: int, user: str, client_id: str | None = None) -> Connected:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"aquami-gateway-{user}")
    client.username_pw_set(user, PASSWORDS[user])
    return _connected(client, port)


def _stop(connected: Connected) -> None:
    connected.client.disconnect()
    connected.client.loop_stop()


def _publish(connected: Connected, topic: str, payload: bytes) -> None:
    sent = connected.client.publish(topic, payload, qos=1)
    sent.wait_for_publish(5)
    assert sent.is_published()


def _wait_for(connected: Connected, count: int) -> list[tuple[str, bytes]]:
    deadline = time.monotonic() + 3
    while len(connected.received) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # and nothing more
    return connected.received


def test_a_gateway_under_the_collector_s_client_id_does_not_end_its_session(port: int) -> None:
    """Before: the reading queued for the collector while it was away was gone when it came back."""
    collector = _collector(port)
    _stop(collector)  # a restart: its session keeps what comes meanwhile
    gw_b = _gateway(port, "gw-b")
    _publish(gw_b, "aquami/v1/gw-b/reads", b"queued for the collector")
    gw_a = _gateway(port, "gw-a", client_id=COLLECTOR_CLIENT_ID)  # gw-a's credentials, the collector's id
    time.sleep(0.5)
    _stop(gw_a)
    endpoint = MqttEndpoint(LOOPBACK, port, username="collector-1", password=PASSWORDS["collector-1"])
    back = _connected(new_client(endpoint, COLLECTOR_CLIENT_ID), port)  # as the collector comes back
    try:
        assert _wait_for(back, 1) == [("aquami/v1/gw-b/reads", b"queued for the collector")]
        assert gw_a.received == []
    finally:
        _stop(back)
        _stop(gw_b)


def test_a_gateway_publishes_as_itself_only_and_no_one_unnamed_connects(port: int) -> None:
    """And the collectors of a group read through their shared subscription, as collector run asks it."""
    collector = _collector(port, "$share/aquami/aquami/v1/+/reads")
    gw_a = _gateway(port, "gw-a")
    try:
        _publish(gw_a, "aquami/v1/gw-b/reads", b"gw-a posing as gw-b")  # acknowledged in 3.1.1, and dropped
        _publish(gw_a, "aquami/v1/gw-a/reads", b"gw-a's own")
        assert _wait_for(collector, 1) == [("aquami/v1/gw-a/reads", b"gw-a's own")]
        anonymous = _connected(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anyone"), port)
        assert not anonymous.client.is_connected() and anonymous.refused == "Not authorized"
        _stop(anonymous)
    finally:
        _stop(gw_a)
        _stop(collector)
