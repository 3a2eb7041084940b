"""paho's log lines through :mod:`aquami.paho_log`: a dropped connection's socket error goes into the
drop's words (DEBUG in paho's log); any other ERROR paho says stays an ERROR, and so does a drop no
``on_disconnect`` is there to say. Real paho clients on a real Mosquitto, behind a proxy that cuts
connections with a RST."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode

from aquami.paho_log import lost_because, pass_paho_log
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

pytestmark = pytest.mark.services

_RESET = "[Errno 104] Connection reset by peer"


def _client(port: int, on_disconnect: Callable[..., None] | None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    pass_paho_log(client)
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port, keepalive=30)
    return client


def _loop_until(client: mqtt.Client, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
            break
    assert condition(), f"timed out waiting for {what}"


def _paho(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "paho"]


def test_a_dropped_connection_is_said_with_the_socket_error_and_paho_line_at_debug(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paho")
    said: list[str] = []

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        said.append(lost_because(reason, client))

    with CutProxy(mosquitto.port) as proxy:
        client = _client(proxy.port, on_disconnect)
        _loop_until(client, client.is_connected, "the CONNACK")
        assert proxy.drop() == 1
        _loop_until(client, lambda: bool(said), "the drop")
    assert said == [_RESET]  # paho's own reason: "Unspecified error"
    lines = [(r.levelno, r.getMessage()) for r in _paho(caplog) if "socket" in r.getMessage()]
    assert lines == [(logging.DEBUG, f"failed to receive on socket: {_RESET}")]
    assert [r.getMessage() for r in _paho(caplog) if r.levelno >= logging.WARNING] == []


def test_a_drop_no_on_disconnect_says_keeps_paho_error(
    mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paho")
    with CutProxy(mosquitto.port) as proxy:
        client = _client(proxy.port, None)
        _loop_until(client, client.is_connected, "the CONNACK")
        assert proxy.drop() == 1
        _loop_until(client, lambda: not client.is_connected(), "the drop")
    errors = [r.getMessage() for r in _paho(caplog) if r.levelno == logging.ERROR]
    assert errors == [f"failed to receive on socket: {_RESET}"]


def test_any_other_paho_error_stays_an_error(mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    """An exception in a callback (a bug, which paho catches with ``suppress_exceptions``) is said at
    ERROR as paho says it, on a client whose drops are said by its ``on_disconnect``."""
    caplog.set_level(logging.DEBUG, logger="paho")
    received: list[str] = []

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received.append(message.topic)
        raise ValueError("a bug in the callback")

    client = _client(mosquitto.port, lambda *args: None)
    client.suppress_exceptions = True
    client.on_message = on_message
    try:
        _loop_until(client, client.is_connected, "the CONNACK")
        client.subscribe("aquami/paho-log/test", qos=0)
        client.publish("aquami/paho-log/test", b"x", qos=0)
        _loop_until(client, lambda: bool(received), "the message back")
    finally:
        client.disconnect()
    errors = [r.getMessage() for r in _paho(caplog) if r.levelno == logging.ERROR]
    assert errors == ["Caught exception in on_message: a bug in the callback"]
