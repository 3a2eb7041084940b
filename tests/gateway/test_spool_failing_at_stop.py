"""A spool that fails as the gateway stops (its events' page damaged, or their table gone from under
it): the publisher's drain meets it as it asks what the spool holds. The stop says it in one line and
finishes stopping (the publisher's thread ended, the spool closed), and ``aquami gateway run`` exits 1
(``Gateway.failure``), as for the spool's other failures.

Before, ``Publisher.stop`` raised SQLite's error to its caller with the publisher's thread left
running; the gateway's stop first failed on the offline status (which counts the events waiting),
after a traceback for its ``gateway_stopped`` event, so ``run`` raised, the spool was never closed,
and ``gateway run`` ended on a traceback.

The spool's file, its damage, the broker (Mosquitto) are real."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aquami.mqtt import MqttEndpoint
from gateway.config import parse_config_text
from gateway.publisher import Publisher
from gateway.service import Gateway
from gateway.spool import OnDamage, Spool
from tests.gateway.helpers import config_text
from tests.gateway.spool_damage import overwrite_pages, table_pages
from tests.services import MosquittoBroker

EVENTS = "aquami/v1/gw-stop/events"


def _spool_with_events(path: Path, on_damage: OnDamage = "stop") -> Spool:
    spool = Spool(path)
    for n in range(3):
        spool.add_message(EVENTS, b'{"event":"test","n":%d}' % n)
    spool.close()
    return Spool(path, on_damage=on_damage)


def _damage_events(spool: Spool) -> None:
    """The events' page overwritten on the card (the WAL's copy checkpointed into the file first, the
    spool's memory holding no page). Under the spool's lock: a running gateway's threads use its
    connection too, and a checkpoint meeting one of their reads is left undone (busy), the WAL's newer
    copy of the page then read over the damage (the gateway stopped as if nothing had happened, now
    and then under load)."""
    with spool._lock:
        (busy, _, _) = spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the checkpoint was left undone: the damage would be read over"
        spool._db.execute("PRAGMA cache_size = 1")
        (page,) = table_pages(spool.path, "messages")
        overwrite_pages(spool.path, [page], b"\xff")


def _drop_events(spool: Spool) -> None:
    """The events' table gone from under the spool (another hand's connection): SQLite's error is no
    damage, so nothing but the stop's drain tells the gateway."""
    other = sqlite3.connect(spool.path)
    try:
        other.execute("DROP TABLE messages")
        other.commit()
    finally:
        other.close()


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_publisher_stop_whose_spool_fails_says_it_in_a_line_and_stops(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _spool_with_events(tmp_path / "s.sqlite")
    publisher = Publisher(spool, "gw-stop", MqttEndpoint.parse(mosquitto.url))
    try:
        _damage_events(spool)
        with caplog.at_level(logging.INFO, logger="gateway.publisher"):
            publisher.start()
            _wait(publisher.connected.is_set, 10)
            assert publisher.connected.is_set()
            publisher.stop(drain_timeout=5)  # before: raised sqlite3.DatabaseError
    finally:
        spool.close()
    said = f"spool {spool.path} fails as the publisher stops: database disk image is malformed; the drain ends "
    said += "here, and what the spool holds waits for the gateway's next start"
    stops = [r for r in caplog.records if "as the publisher stops" in r.getMessage()]
    assert [(r.levelno, r.getMessage(), r.exc_info) for r in stops] == [(logging.ERROR, said, None)]
    assert publisher.failure == said  # the gateway exits 1 on it
    assert not publisher._thread.is_alive()


@pytest.mark.parametrize("fault", [_damage_events, _drop_events], ids=["damaged", "table gone"])
def test_a_gateway_whose_spool_fails_as_it_stops_finishes_stopping_and_exits_1(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture, fault: Callable[[Spool], None]
) -> None:
    path = tmp_path / "gw.sqlite"
    _spool_with_events(path).close()
    text = config_text(mosquitto.url, {"b": 1}, {"b": [1]}, str(path), gateway_id="gw-stop")
    config = parse_config_text(text.replace("[spool]", '[spool]\non_damage = "stop"'))
    assert config.spool.on_damage == "stop"
    gateway = Gateway(config)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, drain_timeout=5))
        await asyncio.to_thread(_wait, gateway.publisher.connected.is_set, 10)
        fault(gateway.spool)
        await asyncio.sleep(0.5)
        stop.set()  # a signal (or, damaged, the gateway's own stop on it)
        await asyncio.wait_for(task, 30)  # before: raised the spool's error

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert gateway.spool.closed and not gateway.publisher._thread.is_alive()
    assert gateway.failure is not None  # exit 1
    if fault is _drop_events:  # only the drain met it: its line is the gateway's failure
        assert gateway.failure.startswith(f"spool {path} fails as the publisher stops: no such table: messages")
    else:
        assert gateway.failure == "the spool is damaged: database disk image is malformed"
    # no traceback of the gateway's (asyncio's own records may hold another test's leftovers)
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None and r.name.startswith("gateway")] == []
    assert len([r for r in caplog.records if "as the publisher stops" in r.getMessage()]) == 1
    assert gateway.status()["state"] == "offline"
