"""The spool failing under the publisher as MQTT sessions end: what the broker acknowledged cannot be
deleted at the session's end either, and that is the spool's episode, said once, not a traceback for
each session that ends while the disk fails. Before, each session's end logged "cannot delete
acknowledged messages from the spool" with a full traceback.

The disk is real (tests/gateway/file_size_limit.py: the kernel refusing the spool's writes), the
broker a real Mosquitto; the sessions end as a broker ends them when another client takes the
gateway's client id over."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.mqtt_client_id import client_id
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.gateway.file_size_limit import no_file_grows_past
from tests.services import MosquittoBroker

SESSIONS_ENDED = 3


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def _take_over(broker: MosquittoBroker, gateway_id: str) -> None:
    """Another client connects with the gateway's client id (the broker ends the gateway's session),
    then leaves."""
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(gateway_id))
    intruder.connect(broker.host, broker.port)
    intruder.loop_start()
    try:
        _wait(intruder.is_connected, 10)
        assert intruder.is_connected()
    finally:
        intruder.disconnect()
        intruder.loop_stop()


def test_acknowledgements_not_deleted_at_sessions_ends_are_the_spool_episode_said_once(
    tmp_path: Path, fresh_mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(40)])
    spool.seal_many(2, 20)  # sealed while the disk took writes: sent (a read) while it refuses them
    spool.close()
    spool = Spool(path)  # its WAL new and empty: the first write to it grows it, and is refused
    options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
    endpoint = MqttEndpoint.parse(fresh_mosquitto.url)
    publisher = Publisher(spool, "gw-ends", endpoint, batch_size=2, window=4, options=options)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.publisher"):
            with no_file_grows_past(1024):
                publisher.start()
                _wait(lambda: publisher.acknowledged_batches == 0 and publisher.published_batches > 0, 10)
                _wait(lambda: any("fails under the publisher" in r.getMessage() for r in caplog.records), 10)
                for ended in range(1, SESSIONS_ENDED + 1):
                    _take_over(fresh_mosquitto, "gw-ends")
                    _wait(lambda ended=ended: publisher.connections == ended + 1 and publisher.connected.is_set(), 10)  # type: ignore[misc]
                assert publisher.connections == SESSIONS_ENDED + 1
                assert publisher.acknowledged_batches == 0  # nothing deleted while the disk refused
            _wait(lambda: spool.depth() == 0, 20)  # the disk takes writes again: all delivered, deleted
            assert spool.depth() == 0
    finally:
        publisher.stop()
        spool.close()
    said = [r for r in caplog.records if r.name == "gateway.publisher" and r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in said] == [f"spool {path} fails under the publisher"], [
        r.getMessage() for r in said
    ]
    assert all(r.exc_info is None for r in said)
