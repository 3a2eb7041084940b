"""A wireless meter's send interval outlives a reload of the gateway's configuration.

A wireless meter is heard, never polled: an interval that ends without its telegram is a failed poll,
and that is how a silent meter goes offline. The interval's end lived in the receiver's listener,
which a reload makes anew: every reload began each meter's interval again, so a meter that stopped
sending was said silent one interval late, and on a gateway reloaded more often than the meter sends
(an operator's automation pushing the file every 10 minutes, meters sending every 15) never at all.

The listener-level tests make a new listener on the receiver's memory at each "reload", as the
gateway's ``_start_buses`` does, and drive its checks with an explicit monotonic ``now``: a listener
checks at its start and then every ``min`` of its meters' intervals and the bus's (here the bus's,
60 s, shorter than the meter's own 15 minutes, so the checks come each minute)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus.build import build_telegram
from firmware_protocols.wmbus.receiver import build_indication
from gateway.config import MeterConfig, WMBusBusConfig, parse_config_text
from gateway.service import Gateway
from gateway.wmbus import WMBusListener
from gateway.wmbus_unconfigured import ReceiverMemory
from simulators.serial_line import LineSettings, SerialLine
from tests.gateway.helpers import bus_config_text, running, until
from tests.gateway.test_wmbus import Receiver, _listening
from tests.gateway.test_wmbus_said_reload import KEY, START, WRONG_KEY
from tests.gateway.test_wmbus_said_reload import _meter as _keyed_meter
from tests.gateway.test_wmbus_said_reload import _telegram as _encrypted
from tests.services import MosquittoBroker

IDENT = "77000001"
QUARTER = 900.0  # the meter's send interval
CHECK_EVERY = 60.0  # the bus's interval: the listener's checks


def _telegram(access_no: int, volume: float = 12.5) -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", volume), "bcd8")])
    return build_telegram(
        records, manufacturer="KAM", id=IDENT, version=1, medium="water", access_no=access_no % 256, crcs=False
    )


def _meter(interval_s: float | None = QUARTER, meter_id: str = "FLAT-1", ident: str = IDENT) -> MeterConfig:
    return MeterConfig(meter_id, 0, "wmbus", {}, interval_s, wmbus_id=ident)


@dataclass
class ReloadedReceiver:
    """One receiver's memory, the listener a reload makes anew on it, and what its meters' health was
    told: ``(second, meter id, "heard" or the reason it was not)``; the listener's UTC clock is
    ``START`` plus the test's seconds."""

    memory: ReceiverMemory = field(default_factory=ReceiverMemory)
    told: list[tuple[float, str, str | None]] = field(default_factory=list)
    listener: WMBusListener | None = None
    now: float = 0.0
    sent: int = 0  # the meter's telegrams: each its own access number, none a duplicate

    def reload(self, *meters: MeterConfig, bus_interval_s: float = CHECK_EVERY) -> WMBusListener:
        """A reload: a new listener for ``meters`` on the same receiver, its first check at once."""
        bus = WMBusBusConfig("radio", "/dev/null", meters, poll_interval_s=bus_interval_s)

        def on_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
            self.told.append((self.now, meter.meter_id, "heard" if ok else error))

        async def on_reading(reading: object) -> None:
            pass

        self.listener = WMBusListener(
            bus, on_reading=on_reading, on_heard=on_heard, memory=self.memory,
            clock=lambda: START + timedelta(seconds=self.now), monotonic=lambda: self.now,
        )  # fmt: skip
        self.listener.check_silence(now=self.now)
        return self.listener

    def check(self, at: float) -> None:
        self.now = at
        assert self.listener is not None
        self.listener.check_silence(now=at)

    def hear(self, at: float, telegram: bytes | None = None) -> None:
        """The meter's next telegram (in the clear), or ``telegram``, at ``at``."""
        self.now = at
        self.sent += 1
        assert self.listener is not None
        asyncio.run(self.listener.handle(_telegram(self.sent) if telegram is None else telegram))

    def silent(self) -> list[tuple[float, str]]:
        """When each meter was said silent (told a failure), and which."""
        return [(at, meter_id) for at, meter_id, why in self.told if why != "heard"]


def _run(
    end_s: int, reload_every_s: float | None, heard_at: Iterable[int], meters: tuple[MeterConfig, ...] = (_meter(),)
) -> ReloadedReceiver:
    """Each second up to ``end_s``: a reload where one is due (a new listener, which checks at its
    start), the meter's telegram where one is heard, and the listener's check each ``CHECK_EVERY``
    seconds of its life."""
    receiver = ReloadedReceiver()
    heard = set(heard_at)
    receiver.reload(*meters)
    started = 0
    for second in range(1, end_s + 1):
        if reload_every_s is not None and second % reload_every_s == 0:
            receiver.now = float(second)
            receiver.reload(*meters)
            started = second
        elif (second - started) % CHECK_EVERY == 0:
            receiver.check(float(second))
        if second in heard:
            receiver.hear(float(second))
    return receiver


def test_a_meter_silent_two_hours_on_a_gateway_reloaded_every_10_minutes_is_said_silent_each_quarter() -> None:
    """The meter sends every 15 minutes, is heard a second into its first interval, and then not for
    the two hours after it; the file is reloaded every 10 minutes. Before, each reload began its
    interval again: 0 intervals said silent in the two hours, the meter never offline. Now each
    quarter says it: 8, the first at the check after its interval from the telegram and its grace
    (1 s + 1.25 × 15 min), each next one a quarter after it."""
    receiver = _run(900 + 7200, 600, heard_at=[1])
    why = "no telegram heard from it in its send interval (15 min)"
    assert receiver.told[0] == (1.0, "FLAT-1", "heard")
    assert receiver.silent() == [(1140.0 + 900.0 * n, "FLAT-1") for n in range(8)]
    assert {reason for _, _, reason in receiver.told[1:]} == {why}


def test_reloads_at_six_tenths_of_the_interval_do_not_delay_the_first_silent_interval() -> None:
    """Reloads every 0.6 × the interval (9 minutes): the meter, heard in its first interval only, is
    said silent when its interval from the telegram and its grace ends (1 s + 1.25 × 15 min: the
    check at 1,140 s), the first without a telegram (before: never)."""
    receiver = _run(1800, 0.6 * QUARTER, heard_at=[1])
    assert receiver.silent() == [(1140.0, "FLAT-1")]


def test_a_meter_that_sends_is_not_made_to_look_silent_by_reloads() -> None:
    """The meter sends every 15 minutes, 7 minutes into each of its intervals, and the file is reloaded
    every 10 minutes, once just after a telegram and before its interval's end: the interval kept
    across the reload keeps its having been heard, so no interval is said silent (no false offline)."""
    heard = [420 + 900 * n for n in range(8)]
    receiver = _run(7200, 600, heard_at=heard)
    assert receiver.silent() == []
    assert [at for at, _, _ in receiver.told] == [float(s) for s in heard]


@settings(max_examples=40, deadline=None)
@given(
    reload_at=st.sets(st.integers(1, 3600), max_size=12),
    heard_at=st.sets(st.integers(1, 3600), max_size=8),
    interval_min=st.integers(2, 20),
)
def test_reloads_of_the_same_file_change_nothing_the_meter_s_health_is_told(
    reload_at: set[int], heard_at: set[int], interval_min: int
) -> None:
    """Whatever the reloads of an unchanged file, and whenever the meter is heard, its health is told
    the same, at the same moments, as by one listener that was never reloaded (each reload checks at
    once, as a new listener does; a check in between changes nothing, as the interval is checked
    against the clock)."""
    meters = (_meter(interval_min * 60.0),)

    def told(reloads: set[int]) -> list[tuple[float, str, str | None]]:
        receiver = ReloadedReceiver()
        receiver.reload(*meters)
        for second in range(1, 3601):
            if second in reloads:
                receiver.now = float(second)
                receiver.reload(*meters)
            receiver.check(float(second))
            if second in heard_at:
                receiver.hear(float(second))
        return receiver.told

    assert told(reload_at) == told(set())


def test_a_meter_whose_interval_changes_keeps_its_interval_s_start() -> None:
    """Reloaded at 10 minutes with its interval now 30 minutes (lengthened): its current interval,
    begun at 0, ends at 30 minutes (not at 15, which would wrong a meter that sends every 30, nor at
    40, 30 from the reload). Reloaded with 5 minutes (shortened) at 10 minutes, nothing heard since
    its interval began: it ends at once, one silent interval; heard meanwhile, none."""
    lengthened = ReloadedReceiver()
    lengthened.reload(_meter())
    lengthened.now = 600.0
    lengthened.reload(_meter(1800.0))
    for minute in range(11, 61):
        lengthened.check(minute * 60.0)
    assert lengthened.silent() == [(1800.0, "FLAT-1"), (3600.0, "FLAT-1")]
    assert lengthened.told[0][2] == "no telegram heard from it in its send interval (30 min)"

    for heard in (False, True):
        shortened = ReloadedReceiver()
        shortened.reload(_meter())
        if heard:
            shortened.hear(500.0)
        shortened.now = 600.0
        shortened.reload(_meter(300.0))
        shortened.check(660.0)
        assert shortened.silent() == ([] if heard else [(600.0, "FLAT-1")])


def test_a_meter_whose_interval_is_the_bus_s_follows_the_bus_s_change() -> None:
    """A meter without an interval of its own takes the bus's: the bus's changed from 15 to 30 minutes
    at a reload, the meter's current interval ends 30 minutes after it began."""
    receiver = ReloadedReceiver()
    receiver.reload(_meter(None), bus_interval_s=QUARTER)
    receiver.now = 600.0
    receiver.reload(_meter(None), bus_interval_s=1800.0)
    for second in range(660, 3601, 60):
        receiver.check(float(second))
    assert receiver.silent() == [(1800.0, "FLAT-1"), (3600.0, "FLAT-1")]


def test_a_meter_removed_is_forgotten_and_one_added_begins_afresh() -> None:
    """FLAT-1 heard at 1 s, then dropped from the file at 10 minutes and configured again at 20: its
    interval begins again at 20 minutes (its first silent one ends at 35, not at 15 or 30), and the
    telegram heard in its old interval does not count in the new one. FLAT-2, added at 10 minutes,
    begins its interval then."""
    flat_2 = _meter(meter_id="FLAT-2", ident="77000002")
    receiver = ReloadedReceiver()
    receiver.reload(_meter())
    receiver.hear(1.0)
    receiver.now = 600.0
    receiver.reload(flat_2)
    receiver.check(900.0)
    receiver.now = 1200.0
    receiver.reload(_meter(), flat_2)
    for second in range(1260, 2941, 60):
        receiver.check(float(second))
    assert receiver.silent() == [(1500.0, "FLAT-2"), (2100.0, "FLAT-1"), (2400.0, "FLAT-2")]


_NOT_DECRYPTED = "FLAT-1 (id 77000001): its telegram does not decrypt with the key configured for it"


@pytest.mark.parametrize("after", ["nothing heard", "heard", "failed again", "same file"])
def test_a_reason_from_before_a_reload_that_changed_the_key_is_said_as_such(after: str) -> None:
    """FLAT-1's key is typed wrong: its telegram at 100 s does not decrypt. At 300 s a reload corrects
    the key (or, ``same file``, reloads it unchanged). Nothing heard since: its interval's end, at
    15 min, says so, the reason kept as from before the reload, with the entry then (before: the old
    reason alone, as if the key just corrected were still wrong). A telegram that decrypts meanwhile:
    heard. One that fails after the reload (another wrong key): its own reason. The same file: the
    reason stands as it was. The next interval, silent, says its silence as any other (after the
    telegram heard, at the check after its interval and grace: 400 s + 1.25 × 15 min)."""
    other_wrong = bytes(15) + b"\x01"
    receiver = ReloadedReceiver()
    receiver.reload(_keyed_meter(WRONG_KEY, interval_s=QUARTER))
    receiver.hear(100.0, _encrypted(1))
    receiver.now = 300.0
    receiver.reload(
        _keyed_meter({"same file": WRONG_KEY, "failed again": other_wrong}.get(after, KEY), interval_s=QUARTER)
    )
    if after in ("heard", "failed again"):
        receiver.hear(400.0, _encrypted(2))
    for second in range(360, 1801, 60):
        receiver.check(float(second))
    (at, meter_id, said), (next_at, _, next_said) = receiver.told
    assert (at, meter_id, next_at) == (
        400.0 if after == "heard" else 900.0,
        "FLAT-1",
        1560.0 if after == "heard" else 1800.0,
    )
    assert next_said == "no telegram heard from it in its send interval (15 min)"
    if after == "nothing heard":
        before = "no telegram heard from it since the reload at 2026-12-07T06:05:00Z, which changed its id, "
        before += f"manufacturer or key; before it, with the entry then: {_NOT_DECRYPTED}"
        assert said is not None and said.startswith(before), said
    elif after == "heard":
        assert said == "heard"
    else:
        assert said is not None and said.startswith(_NOT_DECRYPTED), said


def _radio_file(mosquitto_url: str, tmp_path: Path, device: str, interval_s: float) -> str:
    return bus_config_text(
        mosquitto_url,
        tmp_path / "s.sqlite",
        {"name": "radio", "protocol": "wmbus", "device": device, "poll_interval_s": interval_s},
        [{"meter_id": "FLAT-1", "id": IDENT}],
        gateway_id="gw-reloaded",
    )


@pytest.mark.services
def test_a_gateway_reloaded_more_often_than_its_meter_sends_says_it_silent_with_the_noise_seen(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """End to end: a gateway and a simulated receiver, FLAT-1 sending every 3 s but not heard, only
    a garbled telegram on the receiver's line, and the file reloaded every 1.2 s. Before, no interval
    of FLAT-1 ever ended (each reload began it again) and the garbled bytes were forgotten with the
    listener that dropped them. Now its first interval ends 3 s after it began, saying the bytes
    dropped in it."""
    line = SerialLine(Receiver(), LineSettings(baudrate=57600, parity="N")).start()
    config = parse_config_text(_radio_file(mosquitto.url, tmp_path, line.port, 3.0))
    told: list[str | None] = []
    garbled = bytearray(build_indication(_telegram(1), rssi=0x40))
    garbled[12] ^= 0x10  # a bit flipped on the line: its FCS fails

    async def scenario() -> None:
        gateway = Gateway(config)
        on_heard = gateway._on_heard

        def record_heard(meter: MeterConfig, ok: bool, error: str | None = None) -> None:
            told.append("heard" if ok else error)
            on_heard(meter, ok, error)

        gateway._on_heard = record_heard  # type: ignore[method-assign]
        async with running(gateway, drain_timeout=0.1):
            await _listening(lambda: gateway.listeners.get("radio"))
            line.push(bytes(garbled))
            listener = gateway.listeners["radio"]
            await until(lambda: listener.noise_bytes > 0, 5)
            for _ in range(4):
                await asyncio.sleep(1.2)
                await gateway.apply_config(config)

    try:
        asyncio.run(scenario())
    finally:
        line.stop()
    assert told, "FLAT-1 never said silent: each reload began its interval again"
    assert told[0] == (
        f"no telegram heard from it in its send interval (3 s); {len(garbled)} bytes of garbled or cut-off "
        "messages from the receiver were dropped meanwhile (its telegram may be among them: check the "
        "receiver's cable and port)"
    ), told
