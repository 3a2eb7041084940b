"""Wireless M-Bus: a receiver's serial stream with encrypted and plain telegrams, a repeated telegram,
a wrong key, an unknown meter and noise; duplicates dropped, silent meters offline, then online."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import serial
from construct import Container

import gateway.wmbus
from aquami.contracts.reads import Reading
from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus import encode_telegram, make_telegram
from firmware_protocols.wmbus import tpl as tpl_layer
from firmware_protocols.wmbus.build import build_telegram
from firmware_protocols.wmbus.receiver import build_indication
from gateway.config import MeterConfig, WMBusBusConfig, parse_config_text
from gateway.health import Health
from gateway.service import Gateway
from gateway.spool import NotSpooled, Spool
from gateway.wmbus import WMBusListener
from gateway.wmbus_duplicates import DuplicateFilter
from simulators.serial_line import LineSettings, Reply, SerialLine
from tests.gateway.helpers import bus_config_text, record_readings, running, until

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
WRONG = bytes(16)


class Receiver:
    """The far end of the receiver's serial line: it talks unasked and answers nothing."""

    def handle(self, frame: bytes, now: Any) -> Reply | None:
        return None


def indication(ident: str, volume: float, access_no: int, key: bytes | None = None) -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", volume), "bcd8")])
    telegram = build_telegram(
        records, manufacturer="KAM", id=ident, version=1, medium="water", access_no=access_no, key=key, crcs=False
    )
    return build_indication(telegram, rssi=0x40)


def test_duplicate_filter_window() -> None:
    now = [0.0]
    seen = DuplicateFilter(10.0, clock=lambda: now[0])
    assert seen.first_time("A", 1, [{"v": 1}])
    assert not seen.first_time("A", 1, [{"v": 1}])  # the repeater's copy
    assert seen.first_time("A", 2, [{"v": 1}]) and seen.first_time("B", 1, [{"v": 1}])
    now[0] = 11.0
    assert seen.first_time("A", 1, [{"v": 1}])  # long after: a new telegram that happens to look the same


@pytest.mark.services
def test_receiver_stream(tmp_path: Path, mosquitto) -> None:
    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    text = bus_config_text(
        mosquitto.url,
        tmp_path / "s.sqlite",
        {"name": "radio", "protocol": "wmbus", "device": line.port, "poll_interval_s": 0.5},
        [
            {"meter_id": "FLAT-1", "id": "12345678", "key": KEY.hex()},
            {"meter_id": "FLAT-2", "id": "87654321"},
            {"meter_id": "FLAT-3", "id": "11112222"},
        ],
        gateway_id="gw-wmbus",
        extra_top="[health]\noffline_after = 2\n",
    )
    config = parse_config_text(text)
    assert isinstance(config.buses[0], WMBusBusConfig) and config.meters[0].key == KEY
    taken: list[Reading] = []
    events: list[dict[str, Any]] = []

    async def scenario() -> Gateway:
        gateway = Gateway(config)
        emit = gateway.emit

        def record_event(event: dict[str, Any]) -> None:
            events.append(event)
            emit(event)

        record_readings(gateway, taken)
        gateway.emit = record_event  # type: ignore[method-assign]
        async with running(gateway):
            await _listening(lambda: gateway.listeners.get("radio"))  # what the receiver sends before goes nowhere
            line.push(b"\x00\xa5\x13garbage")
            first = indication("12345678", 10.001, 1, KEY)
            line.push(first)
            line.push(first)  # the same telegram again, through a repeater
            line.push(indication("12345678", 10.002, 2, WRONG))  # a key that does not fit
            line.push(indication("99990000", 5.0, 1))  # somebody else's meter
            for n in range(6):
                line.push(indication("12345678", 10.01 + n, 3 + n, KEY))
                line.push(indication("87654321", 20.0 + n, 1 + n))
                await asyncio.sleep(0.3)
            line.push(indication("11112222", 30.0, 1))  # the silent meter speaks
            # its reading and its meter_online (0.5 s could be too short on a loaded machine)
            await until(
                lambda: (
                    any(r.meter_id == "FLAT-3" for r in taken)
                    and any(e["event"] == "meter_online" and e.get("meter_id") == "FLAT-3" for e in events)
                ),
                20,
            )
        return gateway

    try:
        gateway = asyncio.run(scenario())
    finally:
        line.stop()
    volumes = {m: [r.volume_m3 for r in taken if r.meter_id == m] for m in ("FLAT-1", "FLAT-2", "FLAT-3")}
    assert volumes["FLAT-1"] == [10.001, *(10.01 + n for n in range(6))]  # once, though heard twice
    assert volumes["FLAT-2"] == [20.0 + n for n in range(6)] and volumes["FLAT-3"] == [30.0]
    assert all(r.protocol == "wmbus" for r in taken)
    assert taken[0].to_json()["source"] == {"protocol": "wmbus", "bus": "radio", "address": "12345678"}
    listener = gateway.listeners["radio"]
    assert (listener.duplicates_dropped, listener.undecodable, listener.unknown_meters) == (1, 1, 1)
    # the one neighbour heard, in the bus's health status (before, counted nowhere it showed)
    assert gateway.health.snapshot(0)["buses"]["radio"]["unconfigured_ids_heard"] == 1
    names = [(e["event"], e.get("meter_id")) for e in events]
    assert names.count(("meter_offline", "FLAT-3")) == 1 and names.count(("meter_online", "FLAT-3")) == 1
    assert not [n for n in names if n[1] in ("FLAT-1", "FLAT-2")]


def _radio(port: str) -> WMBusBusConfig:
    return WMBusBusConfig(
        "radio", port, (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678"),), poll_interval_s=60
    )


async def _listening(listener: WMBusListener | Callable[[], WMBusListener | None]) -> None:
    """Until the listener (or the one a gateway has started, once it has) has the receiver's port
    open: the simulated receiver, like a real one, sends what it hears while no one has the port
    open to nowhere (a fixed 0.3 s lost the first telegrams when a loaded machine opened it later)."""

    def port_open() -> bool:
        found = listener if isinstance(listener, WMBusListener) else listener()
        return found is not None and found.port_open

    await until(port_open, 10)
    assert port_open(), "the listener never opened the receiver's port"


def _listen_through(
    frames: list[bytes], on_reading: Callable[[Reading], Awaitable[None]], taken: list[Reading]
) -> WMBusListener:
    """A listener on a simulated receiver hears ``frames``, until a reading is taken (5 s at most);
    fails if the listener ended meanwhile (its error is raised here)."""
    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()

    async def scenario() -> WMBusListener:
        listener = WMBusListener(_radio(line.port), on_reading=on_reading, on_heard=lambda meter, ok, error=None: None)
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        await _listening(listener)  # what the receiver sends before goes nowhere
        for frame in frames:
            line.push(frame)
        deadline = asyncio.get_running_loop().time() + 5
        while not taken and not task.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        alive = not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)  # a listener that died re-raises its error here
        assert alive, "the listener ended"
        return listener

    try:
        return asyncio.run(scenario())
    finally:
        line.stop()


def test_a_telegram_without_a_volume_does_not_stop_the_listener() -> None:
    """A configured meter's telegram that carries no current volume (only its flow, say) gives no
    reading; the listener goes on to the next telegram instead of ending for good."""
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    flow_only = build_user_data([(DataRecord("flow", "m3/h", 0.25), "int32")])
    telegram = build_telegram(
        flow_only, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=1, crcs=False
    )
    frames = [build_indication(telegram, rssi=0x40), indication("12345678", 10.5, 2)]
    listener = _listen_through(frames, on_reading, taken)
    assert [r.volume_m3 for r in taken] == [10.5]
    assert listener.undecodable == 1


def test_a_failed_spool_write_does_not_stop_the_listener() -> None:
    """The spool cannot take a reading (a full disk): that reading fails, as a poll's would, and
    the listener goes on hearing the telegrams after it."""
    taken: list[Reading] = []
    failures = [sqlite3.OperationalError("database or disk is full")]

    async def on_reading(reading: Reading) -> None:
        if failures:
            raise failures.pop()
        taken.append(reading)

    _listen_through([indication("12345678", 10.5, 1), indication("12345678", 10.6, 2)], on_reading, taken)
    assert [r.volume_m3 for r in taken] == [10.6]


def test_a_telegram_the_spool_refuses_is_a_failure_in_its_meter_s_health() -> None:
    """A reading heard but refused by the spool (a full disk) counted as heard: the meter's health
    stayed good while every reading of it was lost, and each telegram logged a traceback. It is now
    the meter's failure with the spool's reason, as a poll's is, told once (not again as silence)."""
    bus = WMBusBusConfig("radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678"),))
    told: list[tuple[str, bool, str | None]] = []

    async def refuse(reading: Reading) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        told.append((meter.meter_id, ok, error))

    listener = WMBusListener(bus, on_reading=refuse, on_heard=on_heard)
    records = build_user_data([(DataRecord("volume", "m3", 1.5), "bcd8")])
    frame = build_telegram(
        records, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=1, key=None, crcs=False
    )
    listener.check_silence(now=0.0)  # the meter's interval starts
    with pytest.raises(NotSpooled):
        asyncio.run(listener.handle(frame))
    listener.check_silence(now=bus.poll_interval_s)  # the interval ends: heard, its failure told already
    assert told == [("FLAT-1", False, "spool: database or disk is full")]


def test_stop_polling_keeps_the_spool_within_its_limit(tmp_path: Path) -> None:
    """Under ``stop_polling`` a full spool takes no more readings from a receiver either: the spool
    holds at most ``max_readings`` while the broker is away, and the next telegram after it has
    drained carries the meter's register again."""
    from aquami.ports import free_port

    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    spool_path = tmp_path / "s.sqlite"
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",  # no broker: nothing leaves the spool
        spool_path,
        {"name": "radio", "protocol": "wmbus", "device": line.port, "poll_interval_s": 60},
        [{"meter_id": "FLAT-1", "id": "12345678"}],
        gateway_id="gw-wmbus-full",
    )
    limited = f'path = "{spool_path}"\nmax_readings = 3\npolicy = "stop_polling"\n'
    config = parse_config_text(text.replace(f'path = "{spool_path}"\n', limited))
    assert (config.spool.max_readings, config.spool.policy) == (3, "stop_polling")

    async def scenario() -> Gateway:
        gateway = Gateway(config)
        async with running(gateway):
            await _listening(lambda: gateway.listeners.get("radio"))  # what the receiver sends before goes nowhere
            for n in range(8):
                line.push(indication("12345678", 10.0 + n, 1 + n))
            await until(lambda: gateway.listeners["radio"].telegrams == 8, 5)
            await asyncio.sleep(0.2)
        return gateway

    try:
        gateway = asyncio.run(scenario())
    finally:
        line.stop()
    assert gateway.listeners["radio"].telegrams == 8
    assert gateway.readings_spooled == 3 and gateway.spool_full
    assert gateway.health.buses["radio"].polls_skipped == 5


def test_a_receiver_that_fails_every_read_is_reopened_after_a_growing_wait() -> None:
    """A receiver that opens but fails each read (a USB stick in a bad state) was reopened at once,
    the loop spinning and logging as fast as reads could fail; now after a growing wait."""
    bus = _radio("/dev/null")
    opened = 0

    class Broken:
        def read(self, size: int) -> bytes:
            raise serial.SerialException("device reports readiness to read but returned no data")

        def close(self) -> None:
            pass

    def open_broken() -> Broken:
        nonlocal opened
        opened += 1
        return Broken()

    async def scenario() -> None:
        listener = WMBusListener(
            bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=lambda meter, ok, error=None: None
        )
        listener._open = open_broken  # type: ignore[method-assign, assignment]
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    # waits of 0.25-0.5, 0.5-1 and 1-2 s: at most four opens in 2.5 s (thousands before)
    assert 2 <= opened <= 4


def test_a_receiver_that_will_not_open_is_tried_again_after_a_growing_wait(monkeypatch) -> None:
    """A stick left unplugged was tried every 5 s for good, a warning each time (17,280 a day); the
    waits now grow as after a failed read, to 30 s."""
    bus = _radio("/dev/ttyAQUAMI-UNPLUGGED")
    waits: list[float] = []

    async def scenario() -> None:
        stop = asyncio.Event()

        async def record(event: asyncio.Event, seconds: float) -> None:
            if seconds == bus.poll_interval_s:  # the silence watcher's round, not a reopening
                return await real_pause(event, seconds)
            waits.append(seconds)
            if len(waits) == 12:
                stop.set()

        real_pause = gateway.wmbus.pause
        monkeypatch.setattr("gateway.wmbus.pause", record)
        listener = WMBusListener(
            bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=lambda meter, ok, error=None: None
        )
        await asyncio.wait_for(listener.run(stop), 10)

    asyncio.run(scenario())
    for k, wait in enumerate(waits):  # doubling from 0.5 s, up to 30 s, with equal jitter
        ceiling = min(30.0, 0.5 * 2**k)
        assert ceiling / 2 <= wait <= ceiling, waits


def test_noise_that_looks_like_a_long_message_does_not_swallow_the_telegrams_after_it() -> None:
    """Four bytes of line noise (A5 02 03 FF) read as the header of a 255-byte message without an
    FCS: the parser held every telegram after it until 259 bytes had come, then handed them on as
    one lump that did not decode. On a quiet network the wait is long and the telegrams are lost.
    Once the line has been quiet longer than a message takes, the noise goes."""
    taken: list[Reading] = []
    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    async def scenario() -> None:
        listener = WMBusListener(_radio(line.port), on_reading=on_reading, on_heard=lambda meter, ok, error=None: None)
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        await _listening(listener)  # what the receiver sends before goes nowhere
        line.push(bytes.fromhex("A50203FF"))
        for n in range(3):  # a meter every few seconds, as a quiet network hears them
            await asyncio.sleep(1.0)
            line.push(indication("12345678", 20.0 + n, n + 1))
        await until(lambda: len(taken) == 3, 5)
        stop.set()
        await asyncio.wait_for(task, 5)

    try:
        asyncio.run(scenario())
    finally:
        line.stop()
    assert [r.volume_m3 for r in taken] == [20.0, 21.0, 22.0]


def test_a_meter_with_a_key_is_not_taken_at_its_word_in_the_clear() -> None:
    """A telegram in security mode 0 (or mode 5 announcing no encrypted block) with a keyed meter's
    id was taken as its reading: anyone near could set its register. It is refused, as wmbusmeters
    refuses it; the encrypted one is taken."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    async def scenario() -> WMBusListener:
        listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda meter, ok, error=None: None)
        records = build_user_data([(DataRecord("volume", "m3", 0.001), "bcd8")])
        plain = build_telegram(
            records, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=7, crcs=False
        )
        await listener.handle(plain)
        encrypted = build_telegram(
            build_user_data([(DataRecord("volume", "m3", 28.115), "bcd8")]),
            manufacturer="KAM", id="12345678", version=1, medium="water", access_no=8, key=KEY, crcs=False,
        )  # fmt: skip
        await listener.handle(encrypted)
        return listener

    listener = asyncio.run(scenario())
    assert [r.volume_m3 for r in taken] == [28.115]
    assert listener.unencrypted_refused == 1


def test_a_meter_s_own_send_interval_decides_when_it_is_silent() -> None:
    """A meter sending every 15 minutes on a bus whose meters send every 5 (its own poll_interval_s
    set): it was counted silent at every 5-minute check, and with offline_after 2 went offline and
    online again every quarter of an hour."""
    slow = MeterConfig("SLOW-1", 0, "wmbus", {}, 900.0, wmbus_id="11111111")
    fast = MeterConfig("FAST-1", 0, "wmbus", {}, None, wmbus_id="22222222")
    bus = WMBusBusConfig("radio", "/dev/null", (slow, fast), poll_interval_s=300)
    failed: list[str] = []

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        if not ok:
            failed.append(meter.meter_id)

    listener = WMBusListener(bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=on_heard)
    for minute in (0, 5, 10, 15, 20, 25, 30):  # the checks (the first starts each meter's interval)
        listener.check_silence(now=minute * 60.0)
    assert failed.count("FAST-1") == 6  # silent every 5 minutes
    assert failed.count("SLOW-1") == 2  # silent at 15 and 30, not at every check


def test_a_neighbour_s_encrypted_meter_is_an_unknown_meter_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    """Five neighbours' encrypted meters (their own keys) and a plain one: each encrypted telegram was
    decoded before its meter was looked up, failed for want of a key, and counted as a failed attempt
    of the bus with a warning, so in a block of flats the bus's health showed mostly failures and the
    log filled. The meter is looked up by its address first: they are unknown meters, nothing else."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    attempts: list[bool] = []
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    def telegram(ident: str, key: bytes | None, access_no: int, header: str = "short") -> bytes:
        records = build_user_data([(DataRecord("volume", "m3", 1.5), "bcd8")])
        return build_telegram(
            records, manufacturer="KAM", id=ident, version=1, medium="water", access_no=access_no, key=key,
            header=header, crcs=False,  # type: ignore[arg-type]
        )  # fmt: skip

    async def scenario() -> WMBusListener:
        listener = WMBusListener(
            bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None, on_attempt=attempts.append
        )
        await listener.handle(telegram("12345678", KEY, 1))  # our meter
        for n in range(5):  # five neighbours' meters, their own keys, short and long TPL headers
            await listener.handle(telegram(f"2000000{n}", bytes([n]) * 16, n, "long" if n % 2 else "short"))
        await listener.handle(telegram("30000000", None, 9))  # a neighbour's plain meter
        return listener

    with caplog.at_level(logging.WARNING, logger="gateway.wmbus"):
        listener = asyncio.run(scenario())
    assert [r.volume_m3 for r in taken] == [1.5]
    assert attempts == [True]
    assert (listener.unknown_meters, listener.undecodable) == (6, 0)
    assert not [r for r in caplog.records if r.name == "gateway.wmbus"]


@pytest.mark.parametrize(
    ("manufacturer", "sender", "medium", "taken"),
    [
        (None, "KAM", "water", True),
        (None, "KAM", "cold_water", True),
        (None, "KAM", "hot_water", True),
        (None, "KAM", "warm_water", True),
        (None, "EFE", "heat", False),  # a neighbour's heat meter with the same serial
        (None, "KAM", "gas", False),
        ("KAM", "KAM", "water", True),
        ("KAM", "ZRI", "water", False),  # another make's water meter with the same serial
    ],
)
def test_a_telegram_is_a_meter_s_only_from_its_make_and_a_water_meter(
    manufacturer: str | None, sender: str, medium: str, taken: bool
) -> None:
    """The gateway matched a telegram to a meter by its 8-digit identification alone: a heat meter of
    another make with the same serial was taken as FLAT-2's reading (1,348.631 m3 beside 42.125).
    The identification is unique only with manufacturer and device type (EN 13757-4:2019 12.5.5,
    12.5.6): a telegram is the meter's only from a water meter (EN 13757-3:2018 Table 12) and from
    its configured manufacturer; another counts as an unknown meter."""
    meter = MeterConfig("FLAT-2", 0, "wmbus", {}, None, wmbus_id="87654321", manufacturer=manufacturer)
    bus = WMBusBusConfig("radio", "/dev/null", (meter,))
    readings: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        readings.append(reading)

    records = build_user_data([(DataRecord("volume", "m3", 1348.631), "bcd8")])
    telegram = build_telegram(
        records, manufacturer=sender, id="87654321", version=4, medium=medium, access_no=200, crcs=False
    )
    listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None)
    asyncio.run(listener.handle(telegram))
    assert [r.volume_m3 for r in readings] == ([1348.631] if taken else [])
    assert listener.unknown_meters == (0 if taken else 1)


def _partly_encrypted(
    encrypted: bytes, clear: bytes, access_no: int, mode: int = 5, blocks: int | None = None
) -> bytes:
    """A telegram of FLAT-1 (KEY) whose records ``encrypted`` fill the encrypted blocks (or only the
    first ``blocks`` of them) and ``clear`` follow them in the clear."""
    telegram = make_telegram(
        encrypted, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=access_no,
        security_mode=mode, message_counter=access_no, crcs=False,  # type: ignore[arg-type]
    )  # fmt: skip
    if blocks is not None:
        configuration = tpl_layer.configuration_json(tpl_layer.configuration_of(telegram.tpl.header))
        fields = {k: v for k, v in telegram.tpl.header.items() if not k.startswith("_")}
        fields["signature"] = tpl_layer.signature_of({**configuration, "encrypted_blocks": blocks})
        telegram = dataclasses.replace(
            telegram, tpl=Container(ci_field=telegram.tpl.ci_field, header=Container(**fields))
        )
    return encode_telegram(dataclasses.replace(telegram, application=telegram.application + clear), KEY)


def test_records_after_the_encrypted_blocks_of_mode_5_are_not_taken(caplog: pytest.LogCaptureFixture) -> None:
    """Security mode 5 encrypts only the first N blocks; records after them travel in the clear and
    nothing authenticates them. A forger lowered N to one block and wrote the volume's upper bytes in
    the clear: 999,999.808 m3 was taken for a meter at 123.456. For a meter with a key, only records
    inside the encrypted blocks count now; the others are dropped, counted and logged once."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    head = bytes.fromhex("046D2A0B2135 02FD170000 0413")  # date-time, error flags, then the volume's DIF VIF
    forged = _partly_encrypted(
        head + (123456).to_bytes(4, "little")[:1], (999_999_999 >> 8).to_bytes(3, "little"), 9, blocks=1
    )
    volume = build_user_data([(DataRecord("volume", "m3", 10.0), "bcd8")])
    flow = build_user_data([(DataRecord("flow", "m3/h", 99.0), "int32")])  # a flow written in the clear

    async def scenario() -> WMBusListener:
        listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None)
        await listener.handle(forged)
        await listener.handle(_partly_encrypted(volume, flow, 10))
        await listener.handle(
            _partly_encrypted(build_user_data([(DataRecord("volume", "m3", 10.5), "bcd8")]), flow, 11)
        )
        return listener

    with caplog.at_level(logging.WARNING, logger="gateway.wmbus"):
        listener = asyncio.run(scenario())
    assert [(r.volume_m3, r.flow_m3h) for r in taken] == [(10.0, None), (10.5, None)]
    assert listener.clear_records_dropped == 3  # the forged volume, and the flow twice
    assert sum("in the clear" in r.getMessage() for r in caplog.records if r.name == "gateway.wmbus") == 1


def test_records_after_the_encrypted_blocks_of_mode_7_are_authenticated_and_taken() -> None:
    """In mode 7 the AFL MAC covers the whole TPL, the records after the encrypted blocks too."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    volume = build_user_data([(DataRecord("volume", "m3", 10.0), "bcd8")])
    flow = build_user_data([(DataRecord("flow", "m3/h", 0.25), "int32")])
    listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None)
    asyncio.run(listener.handle(_partly_encrypted(volume, flow, 3, mode=7)))
    assert [(r.volume_m3, r.flow_m3h) for r in taken] == [(10.0, 0.25)]
    assert listener.clear_records_dropped == 0


def _clocked(volume: float, access_no: int, mode: int, counter: int, meter_time: str) -> bytes:
    """FLAT-1's telegram (KEY) with its volume and its clock (the date-time record)."""
    records = build_user_data(
        [(DataRecord("volume", "m3", volume), "bcd8"), (DataRecord("datetime", None, meter_time), "int32")]
    )
    return build_telegram(
        records, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=access_no, key=KEY,
        security_mode=mode, message_counter=counter, crcs=False,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("mode", [5, 7])
def test_a_replayed_telegram_is_refused_even_after_a_restart(
    mode: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A telegram recorded off the air and sent again a week later was taken as a new reading at the
    new time: neither the AFL message counter (mode 7) nor the meter's clock (mode 5) was checked
    against what the meter had sent since. Now the last accepted counter and clock are kept in the
    spool's database: a replay is refused, counted in the bus's health (not a failed attempt) and
    logged once, after a restart too; a repeater's copy within the window is still a duplicate."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    recorded = _clocked(100.0, 1, mode, 1, "2026-03-01T00:00")
    week_later = _clocked(107.25, 2, mode, 2, "2026-03-08T00:00")
    monotonic = [0.0]

    def listener_on(spool: Spool, taken: list[Reading], attempts: list[bool], health: Health) -> WMBusListener:
        async def on_reading(reading: Reading) -> None:
            taken.append(reading)

        listener = WMBusListener(
            bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None, on_attempt=attempts.append,
            freshness=spool, on_replay=lambda: health.replayed("radio"),
        )  # fmt: skip
        listener.duplicates = DuplicateFilter(bus.duplicate_window_s, clock=lambda: monotonic[0])
        return listener

    taken: list[Reading] = []
    attempts: list[bool] = []
    health = Health("gw", 3)
    spool = Spool(tmp_path / "spool.sqlite")
    listener = listener_on(spool, taken, attempts, health)

    async def first_run() -> None:
        await listener.handle(recorded)
        monotonic[0] += 7 * 86400
        await listener.handle(week_later)
        await listener.handle(week_later)  # a repeater's copy, within the window
        monotonic[0] += 300
        await listener.handle(recorded)  # replayed
        monotonic[0] += 300
        await listener.handle(recorded)  # and again: counted again, logged once

    with caplog.at_level(logging.WARNING, logger="gateway.wmbus"):
        asyncio.run(first_run())
    assert [r.volume_m3 for r in taken] == [100.0, 107.25]
    assert (listener.duplicates_dropped, listener.replayed, listener.undecodable) == (1, 2, 0)
    assert False not in attempts
    assert health.snapshot(0)["buses"]["radio"]["telegrams_replayed"] == 2
    [warning] = [r.getMessage() for r in caplog.records if r.name == "gateway.wmbus" and "replay" in r.getMessage()]
    expected = "counter 1 is not above the last accepted 2" if mode == 7 else "2026-03-01T00:00 is before"
    assert expected in warning and "FLAT-1" in warning
    spool.close()

    spool = Spool(tmp_path / "spool.sqlite")  # the gateway restarted
    taken.clear()
    listener = listener_on(spool, taken, attempts, health)
    asyncio.run(listener.handle(recorded))
    assert taken == [] and listener.replayed == 1
    spool.close()


def test_a_telegram_without_a_clock_or_counter_cannot_be_told_from_a_replay() -> None:
    """Mode 5 without the meter's date-time record: nothing tells a replay, and it is taken (the
    README says so)."""
    bus = WMBusBusConfig(
        "radio", "/dev/null", (MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY),)
    )
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    def telegram(volume: float, access_no: int) -> bytes:
        records = build_user_data([(DataRecord("volume", "m3", volume), "bcd8")])
        return build_telegram(
            records, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=access_no, key=KEY,
            crcs=False,
        )  # fmt: skip

    listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None)
    listener.duplicates = DuplicateFilter(0.0)
    recorded = telegram(100.0, 1)

    async def scenario() -> None:
        for data in (recorded, telegram(107.25, 2), recorded):
            await listener.handle(data)

    asyncio.run(scenario())
    assert [r.volume_m3 for r in taken] == [100.0, 107.25, 100.0] and listener.replayed == 0


def test_a_receiver_that_will_not_open_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    """The README's example gateway.toml run with no stick plugged in warned `radio-1: cannot open
    /dev/ttyUSB2: [Errno 2] could not open port /dev/ttyUSB2: [Errno 2] No such file or directory:
    '/dev/ttyUSB2'` (pyserial's words); now the system's reason once, as the other buses say it, with
    what to check (the system's `No such file or directory` alone gave no hint)."""
    device = "/dev/ttyAQUAMI-UNPLUGGED"
    bus = _radio(device)

    async def scenario() -> None:
        stop = asyncio.Event()
        listener = WMBusListener(
            bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=lambda meter, ok, error=None: None
        )
        running = asyncio.ensure_future(listener.run(stop))
        while not any(r.name == "gateway.wmbus" for r in caplog.records):
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(running, 10)

    with caplog.at_level(logging.WARNING, logger="gateway.wmbus"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    first = next(r.getMessage() for r in caplog.records if r.name == "gateway.wmbus")
    assert first.startswith(
        f"radio: cannot open {device}: No such file or directory "
        "(unplugged, or another device name? ls /dev/serial/by-id/); trying again in "
    ), first


def _volume_telegram(volume: float, access_no: int, key: bytes | None) -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", volume), "bcd8")])
    return build_telegram(
        records, manufacturer="KAM", id="12345678", version=1, medium="water", access_no=access_no, key=key, crcs=False
    )


@pytest.mark.parametrize(
    ("configured", "sent_with", "words"),
    [
        (WRONG, KEY, "does not decrypt with the key configured for it"),  # a key typed wrong
        (None, KEY, "the gateway's file gives it no key"),  # a key left out
    ],
    ids=["wrong key", "no key"],
)
def test_a_meter_whose_telegrams_cannot_be_opened_is_named_once_and_its_health_says_why(
    configured: bytes | None, sent_with: bytes, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong or missing key: each telegram logged `radio: telegram not decoded: meter 12345678: …`,
    every send interval, without the gateway's meter id or what to do, and the meter went offline
    with no reason in its health. Now nothing is taken, one warning names the meter and what to do,
    and the meter's failed interval carries the reason."""
    meter = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=configured)
    bus = WMBusBusConfig("radio", "/dev/null", (meter,), poll_interval_s=60)
    taken: list[Reading] = []
    told: list[tuple[str, bool, str | None]] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        told.append((meter.meter_id, ok, error))

    async def scenario() -> WMBusListener:
        listener = WMBusListener(bus, on_reading=on_reading, on_heard=on_heard)
        listener.check_silence(now=0.0)  # the meter's interval starts
        for n in range(3):
            await listener.handle(_volume_telegram(10.0 + n, n, sent_with))
        listener.check_silence(now=60.0)  # its interval ends, nothing taken
        return listener

    with caplog.at_level(logging.WARNING, logger="gateway.wmbus"):
        listener = asyncio.run(scenario())
    assert taken == [] and listener.undecodable == 3
    [warning] = [r.getMessage() for r in caplog.records if r.name == "gateway.wmbus"]
    assert warning.startswith("radio: FLAT-1 (id 12345678)") and words in warning, warning
    assert "nothing taken" in warning and "key" in warning.split("nothing taken; ")[1]
    [(meter_id, ok, why)] = told
    assert (meter_id, ok) == ("FLAT-1", False) and why is not None and words in why


def test_a_meter_whose_key_is_corrected_is_said_to_decode_again(caplog: pytest.LogCaptureFixture) -> None:
    """The meter's telegrams fail (the key the meter was sent with is not the one configured), then
    decode: one warning, then one INFO line saying they decode again, and the reading is taken."""
    meter = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="12345678", key=KEY)
    bus = WMBusBusConfig("radio", "/dev/null", (meter,), poll_interval_s=60)
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    async def scenario() -> None:
        listener = WMBusListener(bus, on_reading=on_reading, on_heard=lambda m, ok, error=None: None)
        for n in range(2):
            await listener.handle(_volume_telegram(10.0 + n, n, WRONG))
        await listener.handle(_volume_telegram(12.5, 2, KEY))

    with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
        asyncio.run(scenario())
    assert [r.volume_m3 for r in taken] == [12.5]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.wmbus"]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
    assert said[1][1].startswith("radio: FLAT-1's telegrams decode again after ") and "2 not decoded" in said[1][1]


def test_a_silent_interval_says_what_the_receiver_s_line_showed() -> None:
    """A meter whose telegrams the receiver's line garbled (the rig's `garbled` fault) went offline
    with `last_error: null`, as a meter that sent nothing did: the message's FCS failed and it was
    dropped, said nowhere. The interval's failure now says it was silent, and how many bytes were
    dropped as garbled meanwhile; nothing is taken from the garbled message."""
    bus = WMBusBusConfig("radio", "/dev/null", _radio("/dev/null").meters, poll_interval_s=60)
    told: list[tuple[str, bool, str | None]] = []

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        told.append((meter.meter_id, ok, error))

    listener = WMBusListener(bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=on_heard)
    listener.check_silence(now=0.0)
    listener.check_silence(now=60.0)  # nothing at all
    garbled = bytearray(indication("12345678", 10.5, 1))
    garbled[12] ^= 0x10  # a bit flipped on the line: the FCS fails
    assert listener.parser.feed(bytes(garbled)) == []
    listener.check_silence(now=120.0)
    listener.check_silence(now=180.0)  # silent again, nothing garbled this time
    assert [(m, ok) for m, ok, _ in told] == [("FLAT-1", False)] * 3
    quiet, noisy, quiet_again = (why for _, _, why in told)
    assert quiet == quiet_again == "no telegram heard from it in its send interval (1 min)"
    assert noisy == (
        f"no telegram heard from it in its send interval (1 min); {len(garbled)} bytes of garbled or cut-off "
        "messages from the receiver were dropped meanwhile (its telegram may be among them: check the "
        "receiver's cable and port)"
    )


def test_a_silent_interval_while_the_receiver_is_unplugged_says_so() -> None:
    """A receiver unplugged: its meters went offline with `last_error: null`; now each silent interval
    says the receiver fails and why."""
    bus = WMBusBusConfig("radio", "/dev/ttyAQUAMI-UNPLUGGED", _radio("/dev/null").meters, poll_interval_s=0.3)
    told: list[str | None] = []

    async def scenario() -> None:
        stop = asyncio.Event()

        def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
            told.append(error)
            stop.set()

        listener = WMBusListener(bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=on_heard)
        await asyncio.wait_for(listener.run(stop), 10)

    asyncio.run(scenario())
    assert told[0] == (
        "no telegram heard from it in its send interval (0 s): the receiver on /dev/ttyAQUAMI-UNPLUGGED fails "
        "(cannot open /dev/ttyAQUAMI-UNPLUGGED: No such file or directory "
        "(unplugged, or another device name? ls /dev/serial/by-id/))"
    ), told
