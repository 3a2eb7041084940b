"""An exception in one of the publisher's paho callbacks (a bug) stops the gateway with exit 1.

Before, it ended the MQTT session and the next one met the same bug: 22 connections in 3 s, nothing
delivered, a traceback each and a warning blaming a second gateway with the same gateway_id, while
the gateway ran on. Now it is logged once and the gateway stops, for its supervisor to restart it;
the spool keeps every reading.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from aquami.cli import app
from aquami.mqtt import MqttEndpoint
from aquami.ports import free_port
from gateway.config import MqttOptions
from gateway.inflight import InFlight
from gateway.mqtt_session import Session
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.gateway.helpers import config_text
from tests.services import MosquittoBroker

pytestmark = pytest.mark.services


def _raising(name: str) -> Callable[..., None]:
    """A callback called ``name`` that raises."""

    def callback(*args: object) -> None:
        raise RuntimeError("a bug in a callback")

    callback.__name__ = name
    return callback


def _send_command(broker: MosquittoBroker, topic: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-commander")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, b"{}", qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize(
    ("part", "callback"), [(Session, "on_connect"), (InFlight, "on_publish"), (Session, "on_message")]
)
def test_a_failing_callback_stops_the_publisher_and_says_why(
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    part: type,
    callback: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(4)])
    failures: list[str] = []
    told = threading.Event()

    def fatal(reason: str) -> None:
        failures.append(reason)
        told.set()

    options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
    gateway_id = f"gw-bug{callback}"
    publisher = Publisher(
        spool, gateway_id, MqttEndpoint.parse(mosquitto.url), batch_size=2, window=2, options=options, on_fatal=fatal
    )
    monkeypatch.setattr(part, callback, _raising(callback))
    caplog.set_level(logging.INFO, logger="gateway.publisher")
    publisher.start()
    try:
        if callback == "on_message":
            assert publisher.connected.wait(5)
            time.sleep(0.3)  # its subscription granted
            _send_command(mosquitto, f"aquami/v1/{gateway_id}/cmd/ping")
        assert told.wait(10), f"not told; {publisher.connections} connections"
        publisher._thread.join(5)
        assert not publisher._thread.is_alive(), "the publisher's thread runs on"
    finally:
        publisher.stop()
    assert failures == [f"the gateway's MQTT {callback} failed (its traceback is logged above)"]
    assert publisher.failure == failures[0]
    assert publisher.connections <= 1
    # the publisher's own records: others (asyncio's, of an earlier test's proxy) are not its words
    own = [r for r in caplog.records if r.name == "gateway.publisher" and r.levelno >= logging.INFO]
    tracebacks = [r for r in own if r.exc_info]
    assert [r.getMessage() for r in tracebacks] == [f"the gateway's MQTT {callback} failed"], "one traceback, the first"
    if callback != "on_publish":  # (on_publish raised before the spool heard of any PUBACK)
        return
    assert spool.depth() == 4, "readings were lost"
    spool.close()


def test_gateway_run_exits_1_when_a_callback_fails(
    mosquitto: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(mosquitto.url, {"tcp-1": free_port()}, {"tcp-1": [1]}, str(tmp_path / "s.sqlite")))
    monkeypatch.setattr(Session, "on_connect", _raising("on_connect"))
    # a gateway that runs on is stopped as Ctrl-C would, after 15 s: it then exits 0
    interrupt = threading.Timer(15, os.kill, (os.getpid(), signal.SIGINT))
    interrupt.start()
    try:
        result = CliRunner().invoke(app, ["gateway", "run", str(config)], terminal_width=400)
    finally:
        interrupt.cancel()
    assert result.exit_code == 1, result.output
