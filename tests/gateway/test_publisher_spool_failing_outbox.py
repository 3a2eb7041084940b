"""Statuses and command replies need no spool: while the spool fails under the publisher (the kernel
refusing its writes, so the acknowledgements it holds cannot be deleted), they still go, at once.

Before, each turn's spool work began with deleting what the broker acknowledged; that failing, the
spool was left alone for its retry wait (1 s), and the turn's sending, the outbox (statuses, replies)
first, was skipped with it: while acknowledgements waited to be deleted, no status or reply went at
all, and a gateway told to stop waited its whole drain timeout for its offline status.

The disk is real (tests/gateway/file_size_limit.py), the broker a real Mosquitto."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.gateway.file_size_limit import no_file_grows_past
from tests.gateway.helpers import Subscriber
from tests.services import MosquittoBroker

STATUS = "aquami/v1/gw-outbox/status/health"


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_status_goes_while_the_spool_fails_under_the_publisher(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    spool.append([{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(40)])
    spool.seal_many(2, 20)  # sealed while the disk took writes: sent (a read) while it refuses them
    spool.close()
    spool = Spool(path)  # its WAL new and empty: the first write to it grows it, and is refused
    publisher = Publisher(spool, "gw-outbox", MqttEndpoint.parse(mosquitto.url), batch_size=2, window=4)
    subscriber = Subscriber(mosquitto.url, [STATUS], client_id="outbox-subscriber")
    try:
        with caplog.at_level(logging.INFO, logger="gateway.publisher"), no_file_grows_past(1024):
            publisher.start()
            _wait(lambda: any("fails under the publisher" in r.getMessage() for r in caplog.records), 10)
            assert publisher.published_batches > 0 and publisher.acknowledged_batches == 0  # acks held
            publisher.send(STATUS, b'{"state":"online"}', retain=True)
            _wait(lambda: subscriber.count("/status/health") > 0, 5)  # (the spool retried every 1 s meanwhile)
            assert subscriber.payloads("/status/health") == [{"state": "online"}]
            assert publisher.acknowledged_batches == 0  # the disk still refused: it went without the spool
    finally:
        subscriber.close()
        publisher.stop()
        spool.close()
