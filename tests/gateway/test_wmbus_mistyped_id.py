"""A wireless meter whose id was typed wrong: it went offline with "no telegram heard from it in its send
interval" while the receiver heard the real meter's telegrams under an id no meter is configured with,
said nowhere. Its silent interval now names the close ids heard, nothing is taken from them, and the
bus's status counts the unconfigured senders it hears (a bounded number)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from pathlib import Path

import pytest
from construct import Container
from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.reads import Reading
from aquami.contracts.schema_files import ContractValidator, breaches
from aquami.contracts.status import status_schema
from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus import encode_telegram, make_telegram
from firmware_protocols.wmbus.build import build_telegram
from firmware_protocols.wmbus.receiver import build_indication
from firmware_protocols.wmbus.telegram import MeterAddress
from gateway.config import MeterConfig, WMBusBusConfig, parse_config_text
from gateway.health import Health
from gateway.service import Gateway
from gateway.wmbus import WMBusListener
from gateway.wmbus_unconfigured import ReceiverMemory, UnconfiguredSenders, looks_mistyped, mistypings
from simulators.serial_line import LineSettings, SerialLine
from tests.gateway.helpers import bus_config_text, running, until
from tests.gateway.test_wmbus import KEY, Receiver, _listening
from tests.services import MosquittoBroker

CONFIGURED = "77000001"
IDS = st.text(alphabet="0123456789", min_size=8, max_size=8)


def _telegram(ident: str, access_no: int, manufacturer: str = "KAM", medium: str = "water") -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", 12.5), "bcd8")])
    return build_telegram(
        records, manufacturer=manufacturer, id=ident, version=1, medium=medium, access_no=access_no, crcs=False
    )


def _silent_intervals(meter: MeterConfig, heard: list[bytes]) -> tuple[list[str | None], list[Reading]]:
    """The meter's interval starts, ``heard`` arrive, it ends: what its health was told, what was taken."""
    bus = WMBusBusConfig("radio", "/dev/null", (meter,), poll_interval_s=60)
    told: list[str | None] = []
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        told.append(error if not ok else "heard")

    async def scenario() -> None:
        listener = WMBusListener(bus, on_reading=on_reading, on_heard=on_heard)
        listener.check_silence(now=0.0)
        for telegram in heard:
            await listener.handle(telegram)
        listener.check_silence(now=60.0)

    asyncio.run(scenario())
    return told, taken


@pytest.mark.services
def test_a_mistyped_id_on_the_simulated_receiver_says_the_close_id_heard(caplog: pytest.LogCaptureFixture) -> None:
    """The receiver hears the meter under 77000010 (two digits swapped in the file) and a neighbour's
    99990000: each silent interval names 77000010 (not the neighbour), one warning for the episode,
    nothing taken, and the bus's status counts the two unconfigured senders."""
    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    meter = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id=CONFIGURED)
    bus = WMBusBusConfig("radio", line.port, (meter,), poll_interval_s=0.5)
    health = Health("gw", offline_after=2)
    health.track("radio", ["FLAT-1"])
    told: list[str | None] = []
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
        told.append(error)
        health.poll_done(meter.meter_id, ok, error=error)

    async def scenario() -> None:
        stop = asyncio.Event()
        listener = WMBusListener(
            bus, on_reading=on_reading, on_heard=on_heard,
            on_unconfigured=lambda count: health.unconfigured_heard("radio", count),
        )  # fmt: skip
        task = asyncio.create_task(listener.run(stop))
        await _listening(listener)
        for n in range(8):
            line.push(build_indication(_telegram("77000010", n), rssi=0x40))
            line.push(build_indication(_telegram("99990000", n), rssi=0x40))
            await asyncio.sleep(0.25)
        stop.set()
        await asyncio.wait_for(task, 10)

    try:
        with caplog.at_level(logging.WARNING, logger="gateway.wmbus"):
            asyncio.run(scenario())
    finally:
        line.stop()
    assert taken == []
    hinted = [why for why in told if why is not None and "77000010" in why]
    assert len(hinted) >= 2, told
    assert hinted[0] == (
        "no telegram heard from it in its send interval (0 s); the receiver hears 77000010 (KAM), not "
        "configured: is the id 77000001 mistyped?"
    )
    assert not [why for why in told if why is not None and "99990000" in why]
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.wmbus"]
    assert len(warnings) == 1 and warnings[0].startswith("radio: FLAT-1 (id 77000001): no telegram heard"), warnings
    status = health.snapshot(0)
    assert status["buses"]["radio"]["unconfigured_ids_heard"] == 2
    assert status["meters"]["FLAT-1"]["last_error"]["message"] == told[-1]
    bus_contract = {"$defs": status_schema()["$defs"], **status_schema()["properties"]["buses"]}
    assert breaches(ContractValidator(bus_contract), status["buses"]) == []


@pytest.mark.parametrize(
    ("manufacturer", "sender", "hint"),
    [
        (
            None,
            _telegram("77000011", 1),
            "the receiver hears 77000011 (KAM), not configured: is the id 77000001 mistyped?",
        ),
        (None, _telegram("77000002", 1, "ZRI"), "the receiver hears 77000002 (ZRI), not configured"),
        ("KAM", _telegram("77000002", 1, "ZRI"), None),  # another make's meter: a neighbour's
        ("KAM", _telegram("77000002", 1, "KAM"), "the receiver hears 77000002 (KAM), not configured"),
        (
            "KAM",
            _telegram(CONFIGURED, 1, "ZRI"),
            "the receiver hears its id 77000001 from a water meter of ZRI, not of KAM as configured: "
            "is the manufacturer mistyped?",
        ),
        (None, _telegram("77000002", 1, medium="heat"), None),  # a heat meter is no water meter typed wrong
        (None, _telegram("77000022", 1), None),  # two digits different
        (None, _telegram("17000007", 1), None),  # two digits swapped, not neighbours
    ],
    ids=[
        "one digit off",
        "another make, none configured",
        "another make than configured",
        "one digit off, its make",
        "its id, another make than configured",
        "a heat meter",
        "two digits off",
        "a swap of digits apart",
    ],
)
def test_only_a_close_water_meter_of_the_configured_make_is_named(
    manufacturer: str | None, sender: bytes, hint: str | None
) -> None:
    told, taken = _silent_intervals(
        MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id=CONFIGURED, manufacturer=manufacturer), [sender]
    )
    assert taken == []
    [why] = told
    assert why is not None and why.startswith("no telegram heard from it in its send interval (1 min)")
    if hint is None:
        assert why == "no telegram heard from it in its send interval (1 min)"
    else:
        assert hint in why, why


def test_a_close_id_is_named_only_for_the_interval_it_was_heard_in() -> None:
    """Heard in one interval, not in the next: the next silent interval does not name it."""
    meter = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id=CONFIGURED)
    bus = WMBusBusConfig("radio", "/dev/null", (meter,), poll_interval_s=60)
    told: list[str | None] = []

    async def scenario() -> None:
        listener = WMBusListener(
            bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=lambda m, ok, error=None: told.append(error)
        )
        listener.check_silence(now=0.0)
        await listener.handle(_telegram("77000010", 1))
        listener.check_silence(now=60.0)
        listener.check_silence(now=120.0)

    asyncio.run(scenario())
    assert told[0] is not None and "77000010" in told[0]
    assert told[1] == "no telegram heard from it in its send interval (1 min)"


def test_the_senders_remembered_are_bounded() -> None:
    """A street of neighbours' meters: no more than the limit remembered, the least recently heard
    forgotten first."""
    senders = UnconfiguredSenders(limit=100)
    for n in range(1000):
        senders.heard(MeterAddress("KAM", f"{n:08d}", 1, "water"), n + 1)
    senders.heard(MeterAddress("KAM", "00000950", 1, "water"), 1001)  # heard again: the most recent
    assert len(senders) == 100
    meter = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id="00000959")
    assert [a.id for a in senders.close_to(meter, 0)] == [
        "00000950", "00000999", "00000995", "00000989", "00000979", "00000969", "00000958", "00000957", "00000956",
        "00000955", "00000954", "00000953", "00000952", "00000951", "00000949", "00000939", "00000929", "00000919",
        "00000909",
    ]  # fmt: skip
    forgotten_close = MeterConfig("FLAT-2", 0, "wmbus", {}, None, wmbus_id="00001500")  # 00000500, heard long ago
    assert senders.close_to(forgotten_close, 0) == []


@given(IDS, st.integers(0, 7), st.sampled_from("0123456789"))
def test_one_digit_different_looks_mistyped(ident: str, at: int, digit: str) -> None:
    heard = ident[:at] + digit + ident[at + 1 :]
    assert looks_mistyped(ident, heard) == (heard != ident)


@given(IDS, st.integers(0, 6))
def test_two_neighbouring_digits_swapped_look_mistyped(ident: str, at: int) -> None:
    heard = ident[:at] + ident[at + 1] + ident[at] + ident[at + 2 :]
    assert looks_mistyped(ident, heard) == (heard != ident)


@given(IDS, IDS)
def test_looks_mistyped_is_symmetric_and_needs_one_or_two_digits_off(configured: str, heard: str) -> None:
    off = sum(a != b for a, b in zip(configured, heard, strict=True))
    assert looks_mistyped(configured, heard) == looks_mistyped(heard, configured)
    if looks_mistyped(configured, heard):
        assert off == 1 or (off == 2 and sorted(configured) == sorted(heard))
    else:
        assert off != 1


@given(IDS, IDS)
def test_the_mistypings_looked_up_are_those_that_look_mistyped(configured: str, heard: str) -> None:
    assert (heard in mistypings(configured)) == looks_mistyped(configured, heard)


def _radio_file(
    mosquitto_url: str, tmp_path: Path, device: str, meters: list[dict[str, str]], interval_s: float
) -> str:
    return bus_config_text(
        mosquitto_url,
        tmp_path / "s.sqlite",
        {"name": "radio", "protocol": "wmbus", "device": device, "poll_interval_s": interval_s},
        meters,
        gateway_id="gw-heard",
    )


def _last_error(gateway: Gateway, meter_id: str) -> str | None:
    error = gateway.health.snapshot(0)["meters"][meter_id]["last_error"]
    return None if error is None else str(error["message"])


@pytest.mark.services
def test_what_the_receiver_heard_outlives_a_reload(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """The receiver hears 77000010 (FLAT-1 configured as 77000001, digits swapped), then the gateway's
    file is reloaded (a meter added). Before, the reload forgot every sender heard: FLAT-1's first
    silent interval after it said only "no telegram heard" and ``unconfigured_ids_heard`` fell to 0.
    Now the interval the reload cut short is carried into the next one, which names 77000010; the
    count stays 1; and once FLAT-1's id is corrected and reloaded, 77000010 is no longer counted."""
    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    flat_1 = {"meter_id": "FLAT-1", "id": CONFIGURED}
    flat_2 = {"meter_id": "FLAT-2", "id": "88880000"}
    before = parse_config_text(_radio_file(mosquitto.url, tmp_path, line.port, [flat_1], 3.0))
    added = parse_config_text(_radio_file(mosquitto.url, tmp_path, line.port, [flat_1, flat_2], 3.0))
    corrected = parse_config_text(
        _radio_file(mosquitto.url, tmp_path, line.port, [{**flat_1, "id": "77000010"}, flat_2], 3.0)
    )
    seen: dict[str, object] = {}

    def unconfigured(gateway: Gateway) -> int:
        return int(gateway.health.snapshot(0)["buses"]["radio"]["unconfigured_ids_heard"])

    async def scenario() -> None:
        gateway = Gateway(before)
        async with running(gateway, drain_timeout=0.1):
            await _listening(lambda: gateway.listeners.get("radio"))
            first = gateway.listeners["radio"]
            line.push(build_indication(_telegram("77000010", 1), rssi=0x40))
            await until(lambda: first.unknown_meters == 1, 5)
            await gateway.apply_config(added)  # within FLAT-1's first interval of 3 s
            seen["silent_before_reload"] = _last_error(gateway, "FLAT-1")
            seen["count_after_reload"] = unconfigured(gateway)
            await until(lambda: _last_error(gateway, "FLAT-1") is not None, 10)
            seen["hint"] = _last_error(gateway, "FLAT-1")
            await gateway.apply_config(corrected)
            seen["count_corrected"] = unconfigured(gateway)

    try:
        asyncio.run(scenario())
    finally:
        line.stop()
    assert seen["silent_before_reload"] is None  # the reload came before the interval's end
    assert seen["hint"] == (
        "no telegram heard from it in its send interval (3 s); the receiver hears 77000010 (KAM), not "
        "configured: is the id 77000001 mistyped?"
    )
    assert seen["count_after_reload"] == 1
    assert seen["count_corrected"] == 0  # now FLAT-1's own: not an unconfigured sender


def test_a_meter_s_first_interval_after_a_reload_names_only_what_was_heard_since_its_last_one_ended() -> None:
    """The memory kept across a reload: FLAT-1's interval ended after 77000010 was heard (it was
    named then), so the next listener's first interval does not name it again; FLAT-2, new on the
    bus, names nothing heard before it came."""
    flat_1 = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id=CONFIGURED)
    flat_2 = MeterConfig("FLAT-2", 0, "wmbus", {}, None, wmbus_id="77000011")
    memory = ReceiverMemory()
    told: list[tuple[str, str | None]] = []

    def listener(*meters: MeterConfig) -> WMBusListener:
        bus = WMBusBusConfig("radio", "/dev/null", meters, poll_interval_s=60)
        return WMBusListener(
            bus,
            on_reading=lambda reading: asyncio.sleep(0),
            on_heard=lambda meter, ok, error=None: told.append((meter.meter_id, error)),
            memory=memory,
        )

    async def scenario() -> None:
        first = listener(flat_1)
        first.check_silence(now=0.0)
        await first.handle(_telegram("77000010", 1))
        first.check_silence(now=60.0)  # named
        second = listener(flat_1, flat_2)  # the reload
        second.check_silence(now=100.0)
        second.check_silence(now=160.0)

    asyncio.run(scenario())
    assert told[0][0] == "FLAT-1" and told[0][1] is not None and "77000010" in told[0][1]
    assert told[1:] == [
        ("FLAT-1", "no telegram heard from it in its send interval (1 min)"),
        ("FLAT-2", "no telegram heard from it in its send interval (1 min)"),
    ]


@pytest.mark.services
def test_the_hint_around_a_failing_receiver_and_the_meter_heard_again_through_a_gateway(
    tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end, a gateway and a simulated receiver on a pty behind a stable device path, FLAT-1
    configured as 77000001 while its telegrams come as 77000010:

    1. the receiver is plugged in a second into FLAT-1's first interval: the interval names 77000010,
       once warned;
    2. heard again, then the receiver unplugged before the interval ends: it says the receiver fails,
       and names 77000010 still;
    3. plugged in again and the meter heard under its configured id: its reading is taken and the
       episode's end is said once, at INFO, ``heard again after …``."""
    device = tmp_path / "ttyRADIO"  # a stable path, as udev's /dev/serial/by-id/...: nothing behind it yet
    first_line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    second_line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    config = parse_config_text(
        _radio_file(mosquitto.url, tmp_path, str(device), [{"meter_id": "FLAT-1", "id": CONFIGURED}], 4.0)
    )
    told: list[str | None] = []
    taken: list[Reading] = []

    def said(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records if r.name == "gateway.wmbus")

    async def scenario() -> None:
        gateway = Gateway(config)
        on_heard, spool_reading = gateway._on_heard, gateway.spool_reading

        def record_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
            told.append("heard" if ok else error)
            on_heard(meter, ok, error)

        async def record_reading(reading: Reading) -> None:
            taken.append(reading)
            await spool_reading(reading)

        gateway._on_heard = record_heard  # type: ignore[method-assign]
        gateway.spool_reading = record_reading  # type: ignore[method-assign]
        async with running(gateway, drain_timeout=0.1):
            await until(lambda: said(f"cannot open {device}"), 10)
            device.symlink_to(first_line.port)  # plugged in
            await _listening(lambda: gateway.listeners.get("radio"))
            first_line.push(build_indication(_telegram("77000010", 1), rssi=0x40))
            await until(lambda: bool(told), 10)  # the first interval's end
            first_line.push(build_indication(_telegram("77000010", 2), rssi=0x40))
            listener = gateway.listeners["radio"]
            await until(lambda: listener.unknown_meters == 2, 5)
            device.unlink()  # unplugged: the port's other end goes, and the path with it
            first_line.stop()
            await until(lambda: len(told) >= 2, 10)
            device.symlink_to(second_line.port)  # plugged in again
            await until(lambda: listener.port_open, 40)
            second_line.push(build_indication(_telegram(CONFIGURED, 3), rssi=0x40))
            await until(lambda: bool(taken), 10)

    try:
        with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
            asyncio.run(scenario())
    finally:
        first_line.stop()
        second_line.stop()
    hint = "the receiver hears 77000010 (KAM), not configured: is the id 77000001 mistyped?"
    assert told[0] == f"no telegram heard from it in its send interval (4 s); {hint}", told
    failing = f"no telegram heard from it in its send interval (4 s): the receiver on {device} fails ("
    assert told[1] is not None and told[1].startswith(failing) and told[1].endswith(f"); {hint}"), told
    assert [r.volume_m3 for r in taken] == [12.5] and told[-1] == "heard", told
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.wmbus"]
    mistyped = [text for level, text in messages if "mistyped" in text]
    assert mistyped == [f"radio: FLAT-1 (id 77000001): {told[0]} (said again every 1 h while it lasts)"], messages
    heard_again = [(level, text) for level, text in messages if "heard again" in text]
    assert len(heard_again) == 1 and heard_again[0][0] == logging.INFO, messages
    assert re.fullmatch(r"radio: FLAT-1 \(id 77000001\) heard again after \d+ s", heard_again[0][1]), heard_again


def _behind_link(inner_id: str, link_id: str, volume: float, access_no: int) -> bytes:
    """A telegram whose extended link layer, under ``link_id``, is encrypted with AES-CTR (under
    ``KEY``) and hides a long transport header naming ``inner_id``."""
    records = build_user_data([(DataRecord("volume", "m3", volume), "bcd8")])
    telegram = make_telegram(
        records, manufacturer="KAM", id=inner_id, version=1, medium="water", access_no=access_no,
        header="long", ell="aes_ctr", crcs=False,
    )  # fmt: skip
    link = Container({**telegram.link, "id": link_id})
    return encode_telegram(dataclasses.replace(telegram, link=link), KEY)


def test_a_meter_s_telegram_naming_another_meter_inside_says_so_in_its_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FLAT-1 (77000001, its key) sends telegrams whose encrypted header names 77000010. Before, each
    was counted as an unknown meter and said nowhere: FLAT-1's interval said "no telegram heard from
    it", though its telegrams were heard and opened with its key. Now the interval says what was heard
    (a failed attempt, warned once while it lasts), and the id inside is no "is the id mistyped?" hint
    for FLAT-2 (77000011, one digit off it): configured so, it would still not be read, as the gateway
    looks a telegram up by its link address. A telegram naming FLAT-1 again is taken, and said."""
    flat_1 = MeterConfig("FLAT-1", 0, "wmbus", {}, None, wmbus_id=CONFIGURED, key=KEY)
    flat_2 = MeterConfig("FLAT-2", 0, "wmbus", {}, None, wmbus_id="77000011")
    bus = WMBusBusConfig("radio", "/dev/null", (flat_1, flat_2), poll_interval_s=60)
    told: list[tuple[str, str | None]] = []
    attempts: list[bool] = []
    taken: list[Reading] = []

    async def on_reading(reading: Reading) -> None:
        taken.append(reading)

    async def scenario() -> WMBusListener:
        listener = WMBusListener(
            bus, on_reading=on_reading, on_attempt=attempts.append,
            on_heard=lambda meter, ok, error=None: told.append((meter.meter_id, "heard" if ok else error)),
        )  # fmt: skip
        listener.check_silence(now=0.0)
        for n in range(3):
            assert await listener.handle(_behind_link("77000010", CONFIGURED, 12.5, n)) is None
        listener.check_silence(now=60.0)
        assert await listener.handle(_behind_link(CONFIGURED, CONFIGURED, 12.75, 4)) is not None
        return listener

    with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
        listener = asyncio.run(scenario())
    why = (
        "FLAT-1 (id 77000001): its telegram opens with its key, but the transport header encrypted in it names "
        "meter 77000010 (KAM, water): nothing taken (a radio module sending that meter's records under the id "
        "77000001, which the gateway cannot take as this meter's, or a telegram altered on the air, which the "
        "extended link layer's AES-CTR does not prevent)"
    )
    assert told == [
        ("FLAT-1", why),
        ("FLAT-2", "no telegram heard from it in its send interval (1 min)"),  # no hint of 77000010
        ("FLAT-1", "heard"),
    ]
    assert attempts == [False, False, False, True] and [r.volume_m3 for r in taken] == [12.75]
    assert (listener.naming_another, listener.unknown_meters, len(listener.unconfigured)) == (3, 0, 0)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.wmbus"]
    assert said[0] == (
        logging.WARNING,
        f"radio: {why} (said again every 1 h while it lasts, and once its telegrams name it)",
    )
    assert len(said) == 2 and said[1][0] == logging.INFO, said
    assert re.fullmatch(r"radio: FLAT-1's telegrams name it again after \d+ s, 3 named another meter", said[1][1])
