"""The spool failing under the publisher (the kernel refusing its writes: "disk I/O error") is said as
the spool's, once, and the MQTT session goes on: the broker is fine, and is not reconnected to. Once
the spool takes writes again, that is said once, and what it holds is delivered.

Before, each of the spool's errors ended the session ("MQTT session failed", with a traceback), and
the publisher reconnected to the broker, again and again, for as long as the disk failed.

The disk is real (tests/gateway/file_size_limit.py), the broker a real Mosquitto."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.gateway.file_size_limit import no_file_grows_past
from tests.services import MosquittoBroker

EVENTS = "aquami/v1/gw-io/events"


def _lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.publisher" and words in r.getMessage()]


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_spool_failing_under_the_publisher_is_said_once_and_the_broker_is_not_reconnected(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(20)])
    for n in range(5):
        spool.add_message(EVENTS, b'{"event":"test","n":%d}' % n)
    spool.close()
    spool = Spool(path)  # its WAL new and empty: the first write to it grows it, and is refused
    options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
    publisher = Publisher(spool, "gw-io", MqttEndpoint.parse(mosquitto.url), batch_size=2, window=2, options=options)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.publisher"):
            with no_file_grows_past(1024):
                publisher.start()
                _wait(lambda: bool(_lines(caplog, "disk I/O error")), 10)
                time.sleep(2.0)  # a while with the disk failing: the spool tried again every second
                connections, failing = publisher.connections, _lines(caplog, "disk I/O error")
            _wait(lambda: spool.depth() == 0 and spool.messages_waiting() == 0, 20)  # the disk takes writes again
            assert (spool.depth(), spool.messages_waiting()) == (0, 0)
            assert publisher.connections == connections == 1
    finally:
        publisher.stop()
        spool.close()
    assert _lines(caplog, "MQTT session failed") == []
    assert len(failing) == 1 and failing[0].startswith(f"spool {path} fails under the publisher: disk I/O error;")
    assert len(_lines(caplog, "works again for the publisher")) == 1
