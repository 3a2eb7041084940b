"""A broker outage in the gateway's log: one line when it goes, a reminder now and then, one when back.

Before, each reconnection attempt said "cannot connect to …" (a warning) and "reconnecting to … in
… s": with waits of 0.05-0.2 s, 2.5 s of a stopped broker gave some 20 of each. And a link that
drops connection after connection (a NAT, a cell modem) was a pair of warnings per drop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from aquami.outage import Outage
from gateway.config import MqttOptions
from gateway.publisher import Publisher
from gateway.spool import Spool
from tests.services import MosquittoBroker
from tests.tcp_cut_proxy import CutProxy

pytestmark = pytest.mark.services


def _readings(first: int, count: int) -> list[dict[str, object]]:
    return [{"meter_id": f"WM-{n}", "ts": "2026-01-01T00:00:00Z", "volume_m3": float(n)} for n in range(first, count)]


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), f"timed out waiting for {what}"


def test_a_broker_outage_is_said_once_reminded_and_its_end_said(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.append(_readings(0, 4))
    options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
    endpoint = MqttEndpoint.parse(fresh_mosquitto.url)
    publisher = Publisher(spool, "gw-outage", endpoint, batch_size=2, window=2, options=options)
    publisher.broker = Outage(logging.getLogger("gateway.publisher"), f"MQTT broker {endpoint.url}", remind_every_s=1.0)
    publisher.start()
    try:
        _wait(lambda: spool.depth() == 0, 10, "the first readings delivered")
        caplog.clear()
        caplog.set_level(logging.INFO, logger="gateway.publisher")
        began = time.monotonic()
        fresh_mosquitto.stop()
        spool.append(_readings(4, 8))
        time.sleep(2.5)
        fresh_mosquitto.start()
        _wait(lambda: spool.depth() == 0, 20, "the readings spooled during the outage delivered")
        lasted = time.monotonic() - began  # the outage as the publisher saw it, and then some
    finally:
        publisher.stop()
        spool.close()
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.publisher"]
    lost = [m for m in said if " unavailable (" in m]
    reminders = [m for m in said if "still unavailable" in m]
    back = [m for m in said if "available again" in m]
    # one line, with the reason ("connection lost: Unspecified error"), and what it means here
    assert len(lost) == 1 and lost[0].startswith(f"MQTT broker {endpoint.url} unavailable (connection lost: "), said
    assert lost[0].endswith("; readings wait in the spool"), said
    # every 1 s here (5 minutes by default), the first 1 s after the outage began: no more than it lasted
    # in seconds, however long a loaded machine took to stop and start the broker (a line per attempt,
    # every 0.05-0.2 s, would be several times as many)
    assert 1 <= len(reminders) <= lasted, (lasted, said)
    assert len(back) == 1 and back[0].startswith(f"MQTT broker {endpoint.url} available again after"), said
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "gateway.publisher"}
    assert levels[back[0]] == logging.INFO, "a recovery pages no one: INFO, not WARNING"
    connected = [m for m in said if m.startswith("connected to")]
    # the broker back is said at once, by the reconnection's line, as the outage's end waits settle_s
    assert connected == [f"connected to {endpoint.url} (MQTT 5)"], said
    others = [m for m in said if m not in lost + reminders + back + connected]
    assert others == [], said  # no line per attempt: neither "cannot connect" nor "reconnecting in"


def test_a_link_that_drops_every_connection_is_one_outage_said_back_once_it_stays_up(
    mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each connection accepted, then cut (a RST) half a second later, eight times: one warning at the
    first drop, with the socket's error, and "available again" once the link has stayed up
    ``settle_s`` (here 2 s, 90 s by default), with the drops counted. Before: "unavailable" and
    "available again" at each drop, and "connected to" at each connection; then the outage said
    "Unspecified error" while paho said "failed to receive on socket: [Errno 104] Connection reset by
    peer" at ERROR at every drop (360 an hour for a link dropped every 10 s)."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.append(_readings(0, 4))
    options = MqttOptions(reconnect_min_s=0.05, reconnect_max_s=0.2)
    with CutProxy(mosquitto.port, name="flapping") as proxy:
        endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{proxy.port}")
        publisher = Publisher(spool, "gw-flapping", endpoint, batch_size=2, window=2, options=options)
        log = logging.getLogger("gateway.publisher")
        publisher.broker = Outage(log, f"MQTT broker {endpoint.url}", remind_every_s=3600, settle_s=2.0)
        caplog.set_level(logging.INFO, logger="gateway.publisher")
        caplog.set_level(logging.DEBUG, logger="paho")
        publisher.start()
        try:
            _wait(lambda: spool.depth() == 0, 10, "the first readings delivered")
            for _ in range(8):
                connections = publisher.connections
                time.sleep(0.5)
                assert proxy.drop() == 1
                last_drop = time.monotonic()
                _wait(lambda: publisher.connections > connections, 10, "the next connection")  # noqa: B023 (called at once)
            back = f"MQTT broker {endpoint.url} available again after "
            _wait(lambda: any(r.getMessage().startswith(back) for r in caplog.records), 15, "the link said back")
            said_back = time.monotonic()
        finally:
            publisher.stop()
            spool.close()
    records = [r for r in caplog.records if r.name == "gateway.publisher" and "available" in r.getMessage()]
    said = [r.getMessage() for r in records]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO], said
    lost = "unavailable (connection lost: [Errno 104] Connection reset by peer); readings wait in the spool"
    assert said[0] == f"MQTT broker {endpoint.url} {lost}"
    # paho's own line for each drop is kept, at DEBUG: the outage says its reason
    paho = [r for r in caplog.records if r.name == "paho"]
    assert [r.getMessage() for r in paho if r.levelno >= logging.WARNING] == []
    reset = "failed to receive on socket: [Errno 104] Connection reset by peer"
    per_drop = [r for r in paho if r.getMessage() == reset]
    assert len(per_drop) == 8 and {r.levelno for r in per_drop} == {logging.DEBUG}
    # what pages an operator alerting on warnings, over the 8 drops: the outage's first line and the
    # short connections' (at the third): before, 8 of paho's ERROR lines more, one a drop
    alerting = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(alerting) == 2 and alerting[0] == said[0] and " connections in a row " in alerting[1], alerting
    assert said_back - last_drop >= 2.0, "said back only once the link had stayed up 2 s"
    counts = said[1].removeprefix(back).split(", ")
    assert len(counts) == 3 and counts[2] == "7 drops", said  # the first drop began the outage; 7 more
    # "connected to" at the first connection and at the outage's first reconnection (the broker back, as far
    # as then known), not at the 7 after it, which the outage counts as drops: before, one a connection (9)
    connected = [r for r in caplog.records if r.name == "gateway.publisher" and r.getMessage().startswith("connected")]
    assert [r.getMessage() for r in connected] == [f"connected to {endpoint.url} (MQTT 5)"] * 2
    assert {r.levelno for r in connected} == {logging.INFO}
