"""The gateway's own writes to a spool whose disk refuses them (the meters' health at each status,
events, the polls' readings) are said once an episode: the first failure with its reason, a reminder
every hour, the end once stored again. Nothing is lost that the spool could keep, nor left uncounted:
the health is stored once it can be, each event is in the log's ``event …`` line and counted in
``events_not_spooled``, each reading not stored counted in ``readings_not_spooled`` (and its poll failed).

Before, the meters' health logged "meter health not saved" with a full traceback at every status
interval, each event an ERROR line "event … not spooled: …", and each batch of readings "cannot write
to the spool" with a traceback, for as long as the disk refused.

The disk is real: the kernel refuses the spool's writes (tests/gateway/file_size_limit.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from pathlib import Path

import pytest

from aquami.contracts.reads import Reading
from gateway.config import parse_config_text
from gateway.service import Gateway, log
from gateway.spool import SpoolFull
from gateway.spool_writes import SpoolWrites
from tests.gateway.file_size_limit import no_file_grows_past
from tests.gateway.helpers import config_text
from tests.gateway.spool_damage import T0

INTERVALS = 5  # status intervals (or events) while the disk refuses writes


class Monotonic:
    """A monotonic clock a test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gateway(path: Path) -> Gateway:
    text = config_text("mqtt://127.0.0.1:1", {"b": 1}, {"b": [1, 2]}, str(path), gateway_id="gw-writes")
    Gateway(parse_config_text(text)).spool.close()  # made; opened again as a gateway starts on it
    gateway = Gateway(parse_config_text(text))
    for bus in gateway.config.buses:
        gateway.health.track(bus.name, (m.meter_id for m in bus.meters))
    return gateway


def _said(caplog: pytest.LogCaptureFixture, level: int) -> list[tuple[str, bool]]:
    return [
        (r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name == "gateway.service" and r.levelno == level
    ]


def test_meters_health_a_failing_spool_cannot_store_is_said_once_an_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.sqlite"
    gateway = _gateway(path)
    clock = Monotonic()
    gateway._spool_writes = SpoolWrites(path, log, remind_every_s=3600, monotonic=clock)
    meters = [m.meter_id for m in gateway.config.meters]
    try:
        with caplog.at_level(logging.INFO, logger="gateway.service"), no_file_grows_past(1024):
            for _ in range(INTERVALS):
                for meter in meters:
                    gateway.health.poll_done(meter, False, error="no answer")
                gateway.save_health()
                clock.now += 60
            clock.now += 3600  # an hour on: a reminder
            gateway.save_health()
        with caplog.at_level(logging.INFO, logger="gateway.service"):
            clock.now += 60
            gateway.save_health()  # the disk takes writes again
        stored = [gateway.spool.load_meter_health(meter) for meter in meters]
    finally:
        gateway.spool.close()
    errors = _said(caplog, logging.ERROR)
    first = (
        f"meters' health not stored in the spool {path}: disk I/O error; kept in memory, tried again at each "
        "status (said again every 1 h while it lasts, and once stored again)"
    )
    assert errors[0] == (first, False)  # before: "meter health not saved" and a traceback, at each interval
    assert len(errors) == 2 and errors[1][1] is False
    assert errors[1][0].startswith(f"meters' health still not stored in the spool {path}, 6 tries failed since ")
    assert errors[1][0].endswith(", the last: disk I/O error")
    assert f"meters' health stored in the spool {path} again after 1 h 6 min, 6 tries failed" in [
        message for message, _ in _said(caplog, logging.INFO)
    ]
    assert [s is not None and s[2] for s in stored] == [INTERVALS, INTERVALS]  # nothing lost: stored once it could be


def test_events_a_failing_spool_cannot_store_are_said_once_an_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gw.sqlite"
    gateway = _gateway(path)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.service"), no_file_grows_past(1024):
            for n in range(INTERVALS):
                gateway.emit(gateway.health.gateway_event("spool_resumed", spool_depth=n, policy="stop_polling"))
        with caplog.at_level(logging.INFO, logger="gateway.service"):
            gateway.emit(gateway.health.gateway_event("spool_resumed", spool_depth=9, policy="stop_polling"))
        waiting = gateway.spool.messages_waiting()
        not_spooled = gateway.status()["events_not_spooled"]
    finally:
        gateway.spool.close()
    first = (
        f"events not stored in the spool {path}: disk I/O error; the events meanwhile are in this log alone (each "
        "its `event …` line), not sent to the broker, and counted in events_not_spooled (said again every 1 h while "
        "it lasts, and once stored again)"
    )
    assert _said(caplog, logging.ERROR) == [(first, False)]  # before: "event spool_resumed not spooled: …" 5 times
    infos = [message for message, _ in _said(caplog, logging.INFO)]
    assert [m for m in infos if m.startswith("event spool_resumed")] == [
        f'event spool_resumed: spool_depth={n} policy="stop_polling"' for n in [*range(INTERVALS), 9]
    ]  # each event still in the log
    assert f"events stored in the spool {path} again after 0 s, {INTERVALS} tries failed" in infos
    assert waiting == 1
    assert not_spooled == INTERVALS  # each event the disk refused counted (before: in the log alone)


def test_readings_a_failing_spool_cannot_store_are_said_once_an_episode_each_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer, fed as polls feed it, one reading after another (a batch each)."""
    path = tmp_path / "gw.sqlite"
    gateway = _gateway(path)

    async def polls() -> list[BaseException]:
        stop = asyncio.Event()
        writer = asyncio.create_task(gateway._writer(stop))
        refused: list[BaseException] = []
        with no_file_grows_past(1024):
            for n in range(INTERVALS):
                try:
                    await gateway.spool_reading(Reading(f"WM-{n}", T0, 1.0 + n))
                except sqlite3.Error as error:  # the poll fails with it
                    refused.append(error)
        await gateway.spool_reading(Reading("WM-again", T0, 9.0))  # the disk takes writes again
        stop.set()
        gateway._wake_writer.set()
        await writer
        return refused

    try:
        with caplog.at_level(logging.INFO, logger="gateway.service"):
            refused = asyncio.run(polls())
        depth = gateway.spool.depth()
    finally:
        gateway.spool.close()
    assert len(refused) == INTERVALS and gateway.readings_not_spooled == INTERVALS  # each counted
    assert gateway.readings_spooled == 1 and depth == 1
    first = (
        f"readings not stored in the spool {path}: disk I/O error; each poll meanwhile fails with it, its reading "
        "lost and counted in readings_not_spooled (said again every 1 h while it lasts, and once stored again)"
    )
    assert _said(caplog, logging.ERROR) == [(first, False)]  # before: a traceback for each of the 5 batches
    infos = [message for message, _ in _said(caplog, logging.INFO)]
    assert f"readings stored in the spool {path} again after 0 s, {INTERVALS} tries failed" in infos


def _page_limit(gateway: Gateway, pages_beyond: int) -> None:
    """SQLite's page limit for the spool (``max_page_count``, which the spool counts as its room, as it
    counts a filesystem's free space): ``pages_beyond`` its pages now, its free pages aside."""
    with gateway.spool._lock:
        db = gateway.spool._db
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages + pages_beyond}")
    assert free == 0, free  # (else those would be room too)


def test_a_full_spool_is_said_once_an_episode_and_its_end_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The spool short of room (SQLite's page limit reached, less left than the reserve kept for
    delivery) refuses each poll's reading: said when it begins, reminded an hour on, and its end at
    INFO once it takes readings again (the limit raised: an operator clearing the disk). Before: said
    once however long it lasted, and its end a WARNING, "the spool takes readings again"."""
    path = tmp_path / "gw.sqlite"
    gateway = _gateway(path)
    clock = Monotonic()
    gateway._spool_writes = SpoolWrites(path, log, remind_every_s=3600, monotonic=clock)
    gateway.spool.reserve_bytes = 8 * 4096

    async def polls() -> list[BaseException]:
        stop = asyncio.Event()
        writer = asyncio.create_task(gateway._writer(stop))
        refused: list[BaseException] = []
        _page_limit(gateway, 0)  # full: no page beyond those it has
        for n in range(INTERVALS + 1):
            if n == INTERVALS:
                clock.now += 3600  # an hour on: a reminder
            try:
                await gateway.spool_reading(Reading(f"WM-{n}", T0, 1.0 + n))
            except SpoolFull as error:  # the poll fails with it
                refused.append(error)
            clock.now += 60
        _page_limit(gateway, 1000)  # room again
        await gateway.spool_reading(Reading("WM-again", T0, 9.0))
        stop.set()
        gateway._wake_writer.set()
        await writer
        return refused

    try:
        with caplog.at_level(logging.INFO, logger="gateway.service"):
            refused = asyncio.run(polls())
        depth = gateway.spool.depth()
    finally:
        gateway.spool.close()
    assert len(refused) == INTERVALS + 1 and gateway.readings_not_spooled == INTERVALS + 1  # each counted
    assert gateway.readings_spooled == 1 and depth == 1
    errors = _said(caplog, logging.ERROR)  # (message, traceback?)
    assert errors[0] == (f"{refused[0]} (said again every 1 h while it lasts, and once it takes readings again)", False)
    assert len(errors) == 2 and errors[1][1] is False
    reminder = re.escape(f"spool {path} still full, 6 tries refused since ") + r"\S+Z, the last: "
    assert re.fullmatch(reminder + re.escape(str(refused[-1])), errors[1][0]), errors[1][0]
    assert str(refused[0]).startswith(f"spool full: 0 bytes left for {path}, less than the 32.0 KiB kept to deliver")
    assert _said(caplog, logging.WARNING) == []  # before: "the spool takes readings again (depth 1)"
    infos = [message for message, _ in _said(caplog, logging.INFO)]
    assert f"the spool {path} takes readings again after 1 h 6 min, 6 tries refused (depth 1)" in infos


def test_a_bad_event_and_a_disk_refusing_events_are_each_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An event the gateway cannot write as JSON (a bug) and the disk refusing events are two
    episodes, each said: before, they shared one ("events not stored in the spool …"), so the disk
    failing after a bad event was not said, nor a bad event while the disk failed, and the bad event's
    line carried a traceback."""
    path = tmp_path / "gw.sqlite"
    gateway = _gateway(path)

    def bad(name: str) -> dict[str, object]:  # a frame's bytes: no JSON form
        return gateway.health.gateway_event(name, spool_depth=1, policy="stop_polling", frame=b"\x68\x08")

    def good(depth: int) -> dict[str, object]:
        return gateway.health.gateway_event("spool_resumed", spool_depth=depth, policy="stop_polling")

    try:
        with caplog.at_level(logging.INFO, logger="gateway.service"):
            gateway.emit(bad("spool_full"))
            with no_file_grows_past(1024):
                gateway.emit(good(2))  # the disk refuses it
                gateway.emit(bad("spool_full"))  # its kind's episode goes on: not said again
                gateway.emit(bad("spool_resumed"))  # another kind's begins
                gateway.emit(good(3))
            gateway.emit(good(4))  # the disk takes it: the disk's episode ends
        not_spooled = gateway.status()["events_not_spooled"]
    finally:
        gateway.spool.close()

    def unwritable(name: str) -> str:
        return (
            f"event {name} cannot be written as JSON: field frame=b'h\\x08': bytes has no JSON form; such an "
            "event is in this log alone (its `event …` line), not sent to the broker, and counted in "
            f"events_not_spooled; polling goes on (said again every 1 h while {name} events fail so, and once "
            "they are written again)"
        )

    assert _said(caplog, logging.ERROR) == [
        (unwritable("spool_full"), False),
        (
            f"events not stored in the spool {path}: disk I/O error; the events meanwhile are in this log alone "
            "(each its `event …` line), not sent to the broker, and counted in events_not_spooled (said again "
            "every 1 h while it lasts, and once stored again)",
            False,
        ),
        (unwritable("spool_resumed"), False),
    ]
    infos = [message for message, _ in _said(caplog, logging.INFO)]
    assert f"events stored in the spool {path} again after 0 s, 2 tries failed" in infos
    assert not_spooled == 5
