"""What a wireless M-Bus receiver's listener said once, and the telegrams it took lately, outlive a
reload of the gateway's configuration.

A reload makes the receiver's listener anew. Before, the new one began with nothing said and nothing
taken: with an operator's automation pushing the file every 10 minutes, a meter whose telegrams do
not decode (a wrong key) was warned about at every reload, never with a reminder, and its key
corrected at a reload ended the episode unsaid; a repeater's copy of a telegram taken just before a
reload was taken again after it, a second reading of the same register a few seconds later (the
collector stores it: its readings' key is the meter and the time, collector migration 0001).

As in tests/gateway/test_wmbus_interval_reload.py, a "reload" is a new listener on the receiver's
memory, as the gateway's ``_start_buses`` makes it; the memory is given clocks the test moves (the
monotonic one the episodes and the duplicate filter measure with, the UTC one an episode's start is
said in).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.contracts.reads import Reading
from firmware_protocols.mbus.build import build_user_data
from firmware_protocols.records import DataRecord
from firmware_protocols.wmbus.build import build_telegram
from firmware_protocols.wmbus.receiver import build_indication
from gateway.config import MeterConfig, WMBusBusConfig, parse_config_text
from gateway.service import Gateway
from gateway.wmbus import WMBusListener
from gateway.wmbus_duplicates import DuplicateFilter
from gateway.wmbus_said import ReceiverSayings
from gateway.wmbus_unconfigured import ReceiverMemory
from simulators.serial_line import LineSettings, SerialLine
from tests.gateway.helpers import bus_config_text, record_readings, running, until
from tests.gateway.test_wmbus import Receiver as ReceiverLine
from tests.gateway.test_wmbus import _listening
from tests.services import MosquittoBroker

IDENT = "77000001"
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")  # the meter's key sheet
WRONG_KEY = bytes.fromhex("0F0E0D0C0B0A09080706050403020100")  # typed wrong in the gateway's file
HOUR = 3600.0  # the episodes' reminder period, as in service
START = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _telegram(
    access_no: int, volume: float = 12.5, key: bytes | None = KEY, medium: str = "water", ident: str = IDENT
) -> bytes:
    records = build_user_data([(DataRecord("volume", "m3", volume), "bcd8")])
    return build_telegram(
        records, manufacturer="KAM", id=ident, version=1, medium=medium, access_no=access_no % 256, key=key,
        crcs=False,
    )  # fmt: skip


def _meter(
    key: bytes | None = KEY,
    meter_id: str = "FLAT-1",
    manufacturer: str | None = None,
    ident: str = IDENT,
    interval_s: float | None = None,
) -> MeterConfig:
    return MeterConfig(meter_id, 0, "wmbus", {}, interval_s, wmbus_id=ident, key=key, manufacturer=manufacturer)


@dataclass
class Receiver:
    """One receiver's memory on clocks the test moves, the listener a reload makes anew on it, and the
    readings taken."""

    now: list[float] = field(default_factory=lambda: [0.0])  # monotonic seconds
    taken: list[Reading] = field(default_factory=list)
    memory: ReceiverMemory = field(init=False)
    listener: WMBusListener | None = None

    def __post_init__(self) -> None:
        def monotonic() -> float:
            return self.now[0]

        def utc() -> datetime:
            return START + timedelta(seconds=self.now[0])

        self.memory = ReceiverMemory(
            said=ReceiverSayings(HOUR, monotonic, utc), duplicates=DuplicateFilter(0.0, clock=monotonic)
        )

    def reload(self, *meters: MeterConfig, duplicate_window_s: float = 60.0) -> WMBusListener:
        bus = WMBusBusConfig("radio", "/dev/null", meters, duplicate_window_s=duplicate_window_s)

        async def on_reading(reading: Reading) -> None:
            self.taken.append(reading)

        self.listener = WMBusListener(
            bus, on_reading=on_reading, on_heard=lambda meter, ok, error=None: None, memory=self.memory,
            remind_every_s=HOUR, monotonic=lambda: self.now[0],
        )  # fmt: skip
        return self.listener

    def check(self, at: float) -> None:
        """The listener's check of its meters' send intervals, at ``at``."""
        self.now[0] = at
        assert self.listener is not None
        self.listener.check_silence(now=at)

    def hear(self, at: float, telegram: bytes) -> None:
        self.now[0] = at
        assert self.listener is not None
        asyncio.run(self.listener.handle(telegram))


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.wmbus"]


def test_a_meter_s_undecodable_telegrams_are_said_once_across_reloads_and_its_key_corrected_says_the_whole_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FLAT-1's key is typed wrong: its telegrams, every 15 minutes for 2 hours, do not decode, and the
    file is reloaded every 0.6 × the reminder period (36 minutes). Before, each reload began the
    episode again: its warning said 4 times (at 0, and after each of the 3 reloads), no reminder (no
    episode lasted an hour), and the reload that corrected the key ended it unsaid. Now: said once,
    reminded at 1 h and 2 h, and the first telegram decoded after the key is corrected says the
    whole episode, 2 h 15 min and 9 telegrams not decoded."""
    receiver = Receiver()
    receiver.reload(_meter(WRONG_KEY))
    reloads = [0.6 * HOUR * n for n in (1, 2, 3)]
    with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
        for n, at in enumerate(range(0, 7201, 900)):
            if reloads and reloads[0] < at:
                receiver.now[0] = reloads.pop(0)
                receiver.reload(_meter(WRONG_KEY))
            receiver.hear(float(at), _telegram(n))
        receiver.now[0] = 7500.0
        receiver.reload(_meter(KEY))  # the key corrected
        receiver.hear(8100.0, _telegram(9, volume=12.75))
    said = _said(caplog)
    assert [level for level, _ in said] == [logging.WARNING] * 3 + [logging.INFO], said
    first, *reminders, back = [line for _, line in said]
    assert first.startswith("radio: FLAT-1 (id 77000001): its telegram does not decrypt with the key configured")
    assert first.endswith("(said again every 1 h while it lasts, and once its telegrams decode)")
    assert [r.split(", the last:")[0] for r in reminders] == [
        "radio: FLAT-1's telegrams still not decoded, 5 since 2026-12-07T06:00:00Z",
        "radio: FLAT-1's telegrams still not decoded, 9 since 2026-12-07T06:00:00Z",
    ]
    assert back == "radio: FLAT-1's telegrams decode again after 2 h 15 min, 9 not decoded"
    assert [r.volume_m3 for r in receiver.taken] == [12.75]


def test_a_silent_meter_whose_id_looks_mistyped_is_said_once_across_reloads_and_heard_again_once_corrected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FLAT-1 is configured as 77000001 and sends every 15 minutes as 77000010, the id it really has:
    each of its intervals ends silent while the receiver hears the close id, said once an episode.
    The file is reloaded every 36 minutes. Before, each reload began the episode again (4 warnings in
    2 hours, no reminder) and the reload that corrected the id ended it unsaid; now one warning, a
    reminder an hour on, and its first reading after the id is corrected says it heard again, after
    the whole episode."""
    real = "77000010"
    receiver = Receiver()
    receiver.reload(_meter(None, interval_s=900.0))
    receiver.check(0.0)
    reloads = [0.6 * HOUR * n for n in (1, 2, 3)]
    with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
        for second in range(60, 7201, 60):
            if reloads and reloads[0] <= second:
                receiver.now[0] = reloads.pop(0)
                receiver.reload(_meter(None, interval_s=900.0))
            receiver.check(float(second))
            if second % 900 == 120:
                receiver.hear(float(second), _telegram(second // 60, key=None, ident=real))
        receiver.now[0] = 7300.0
        receiver.reload(_meter(None, interval_s=900.0, ident=real))  # the id corrected
        receiver.hear(7400.0, _telegram(200, key=None, ident=real, volume=13.0))
    said = _said(caplog)
    assert [level for level, _ in said] == [logging.WARNING] * 2 + [logging.INFO], said
    first, reminder, back = [line for _, line in said]
    assert first.startswith("radio: FLAT-1 (id 77000001): no telegram heard from it in its send interval (15 min)")
    assert "the receiver hears 77000010 (KAM), not configured: is the id 77000001 mistyped?" in first
    assert reminder.startswith("radio: FLAT-1 (id 77000001) still silent, 5 intervals since 2026-12-07T06:15:00Z")
    assert back == "radio: FLAT-1 (id 77000010) heard again after 1 h 48 min"
    assert [r.volume_m3 for r in receiver.taken] == [13.0]


def test_a_repeater_s_copy_heard_just_after_a_reload_is_not_a_second_reading() -> None:
    """FLAT-1's telegram is taken 5 s before a reload, and its copy through a repeater heard 3 s after
    it. Before, the new listener's filter was empty: the copy was taken, a second reading of the
    same register 8 s on (the collector stores both). Now it is dropped."""
    receiver = Receiver()
    receiver.reload(_meter(None))
    receiver.hear(100.0, _telegram(7, key=None))
    receiver.now[0] = 105.0
    listener = receiver.reload(_meter(None))
    receiver.hear(108.0, _telegram(7, key=None))
    assert [r.volume_m3 for r in receiver.taken] == [12.5]
    assert listener.duplicates_dropped == 1


@settings(max_examples=60, deadline=None)
@given(
    window_before=st.integers(0, 300),
    window_after=st.integers(0, 300),
    copy_after_s=st.integers(1, 400),
)
def test_a_duplicate_window_changed_at_a_reload_applies_to_the_telegrams_taken_before_it(
    window_before: int, window_after: int, copy_after_s: int
) -> None:
    """Whatever the windows before and after the reload, a copy heard ``copy_after_s`` after the
    telegram (the reload in between) is dropped exactly when it falls within the new window: the
    kept filter takes the new ``duplicate_window_s``."""
    receiver = Receiver()
    receiver.reload(_meter(None), duplicate_window_s=float(window_before))
    receiver.hear(1000.0, _telegram(7, key=None))
    receiver.now[0] = 1000.0 + copy_after_s / 2
    listener = receiver.reload(_meter(None), duplicate_window_s=float(window_after))
    receiver.hear(1000.0 + copy_after_s, _telegram(7, key=None))
    dropped = copy_after_s <= window_after
    assert len(receiver.taken) == (1 if dropped else 2)
    assert listener.duplicates_dropped == int(dropped)


def test_a_meter_removed_and_configured_again_starts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    """FLAT-1's telegrams do not decode; a reload of the same file goes on with the episode (before: a
    second warning), one that drops FLAT-1 forgets it, and a later one configures it again: its next
    undecodable telegram begins a new episode, said whole (not a reminder, nor nothing). Likewise a
    repeater's copy is dropped across a reload of the same file, but a telegram taken before FLAT-1
    was removed is no duplicate of one heard after it came back (forgotten with it)."""
    other = MeterConfig("FLAT-2", 0, "wmbus", {}, None, wmbus_id="77000002")
    receiver = Receiver()
    receiver.reload(_meter(WRONG_KEY), other)
    with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
        receiver.hear(0.0, _telegram(1))
        receiver.now[0] = 5.0
        receiver.reload(_meter(WRONG_KEY), other)  # the same file
        receiver.hear(10.0, _telegram(2))
        receiver.now[0] = 20.0
        receiver.reload(other)  # FLAT-1 removed
        receiver.hear(25.0, _telegram(3))  # an unknown meter now: nothing said
        receiver.now[0] = 30.0
        receiver.reload(_meter(WRONG_KEY), other)  # configured again
        receiver.hear(40.0, _telegram(4))
    said = [line for _, line in _said(caplog)]
    assert len(said) == 2 and said[0] == said[1], said
    assert said[1].endswith("(said again every 1 h while it lasts, and once its telegrams decode)")

    taken_before = Receiver()
    taken_before.reload(_meter(None))
    taken_before.hear(0.0, _telegram(5, key=None))
    taken_before.now[0] = 2.0
    taken_before.reload(_meter(None))  # the same file
    taken_before.hear(4.0, _telegram(5, key=None))  # a repeater's copy: dropped
    taken_before.now[0] = 5.0
    taken_before.reload(other)
    taken_before.now[0] = 10.0
    taken_before.reload(_meter(None))
    taken_before.hear(15.0, _telegram(5, key=None))
    assert len(taken_before.taken) == 2


def test_a_line_said_once_per_meter_is_said_again_only_once_its_entry_changed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A neighbour's heat meter carries FLAT-1's id: said once per meter. Before, said again after
    every reload of the same file; now once, and again only once FLAT-1's entry changed (its
    manufacturer given: what the line was about is another matter now)."""
    heat = _telegram(1, key=None, medium="heat")
    receiver = Receiver()
    with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
        for reload_at in range(4):
            receiver.now[0] = 600.0 * reload_at
            receiver.reload(_meter(None))
            receiver.hear(600.0 * reload_at + 1, heat)
        receiver.reload(_meter(None, manufacturer="KAM"))
        receiver.hear(3000.0, heat)
    said = [line for _, line in _said(caplog)]
    assert len(said) == 2, said
    assert all("comes from KAM heat" in line and "(logged once per meter)" in line for line in said), said
    assert "not any manufacturer's water meter" in said[0] and "not KAM's water meter" in said[1]


def test_a_receiver_left_out_is_said_once_across_reloads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The receiver's stick is out; the file is reloaded while it is. Before, each new listener began
    a new episode: the receiver's failure warned again after each reload. Now the episode goes on:
    one warning, and its working again is said once the stick is back."""
    device = tmp_path / "ttyRADIO"
    memory = ReceiverMemory()
    bus = WMBusBusConfig("radio", str(device), (_meter(None),), poll_interval_s=60)

    async def listen(failed_opens: int = 0) -> None:
        """A listener on the receiver until it failed to open ``failed_opens`` times, or (0) it works."""
        listener = WMBusListener(
            bus, on_reading=lambda reading: asyncio.sleep(0), on_heard=lambda meter, ok, error=None: None,
            memory=memory,
        )  # fmt: skip
        real_open, failed = listener._open, [0]

        def counted_open() -> serial.Serial:
            try:
                return real_open()
            except Exception:
                failed[0] += 1
                raise

        listener._open = counted_open  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        try:
            while failed[0] < failed_opens or not (failed_opens or any("works" in m for _, m in _said(caplog))):
                assert not task.done(), task.exception()
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    master, slave = os.openpty()
    try:
        with caplog.at_level(logging.INFO, logger="gateway.wmbus"):
            asyncio.run(asyncio.wait_for(listen(failed_opens=2), 30))
            assert len(_said(caplog)) == 1, _said(caplog)  # its first failure, said
            caplog.clear()
            asyncio.run(asyncio.wait_for(listen(failed_opens=2), 30))  # the reload's listener fails too
            said_while_out = _said(caplog)
            device.symlink_to(os.ttyname(slave))
            asyncio.run(asyncio.wait_for(listen(), 30))
    finally:
        os.close(master)
        os.close(slave)
    assert said_while_out == [], said_while_out
    assert [line.split(" after ")[0] for _, line in _said(caplog)] == [f"radio: receiver on {device} works again"]


@pytest.mark.services
def test_a_gateway_reloaded_while_a_meter_s_key_is_wrong_warns_once_and_takes_a_repeater_s_copy_once(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """End to end, through ``cmd/reload``'s path (``Gateway.apply_config``) and a simulated receiver:
    FLAT-1's key is typed wrong, FLAT-2 sends in the clear. Each round, FLAT-1's telegram, FLAT-2's
    telegram, a reload, and FLAT-2's telegram again (a repeater's copy). Before, FLAT-1 was warned
    about after every reload (3 warnings in 3 rounds) and each copy was a second reading (6 readings of
    FLAT-2); now 1 warning and 3 readings."""
    line = SerialLine(ReceiverLine(), LineSettings(baudrate=57600, parity="N")).start()
    text = bus_config_text(
        mosquitto.url,
        tmp_path / "s.sqlite",
        {"name": "radio", "protocol": "wmbus", "device": line.port, "poll_interval_s": 600},
        [{"meter_id": "FLAT-1", "id": IDENT, "key": WRONG_KEY.hex()}, {"meter_id": "FLAT-2", "id": "77000002"}],
        gateway_id="gw-said",
    )
    config = parse_config_text(text)
    taken: list[Reading] = []
    warned: list[str] = []

    class Warned(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING and "FLAT-1" in record.getMessage():
                warned.append(record.getMessage())

    async def heard(gateway: Gateway, *telegrams: bytes) -> None:
        """``telegrams`` sent on the air, and handled by the gateway's listener (one started anew by a
        reload, once it has the port open); a reading taken is spooled 0.2 s later at most."""
        await _listening(lambda: gateway.listeners.get("radio"))
        listener = gateway.listeners["radio"]
        handled = listener.telegrams + len(telegrams)
        for telegram in telegrams:
            line.push(build_indication(telegram, rssi=0x40))
        await until(lambda: listener.telegrams == handled, 10)
        await asyncio.sleep(0.2)

    async def scenario() -> None:
        gateway = Gateway(config)
        record_readings(gateway, taken)
        async with running(gateway, drain_timeout=0.1):
            for round_ in range(3):
                flat_2 = _telegram(round_, key=None, ident="77000002")
                await heard(gateway, _telegram(round_), flat_2)
                await gateway.apply_config(config)
                await heard(gateway, flat_2)  # the repeater's copy, after the reload

    handler = Warned()
    logging.getLogger("gateway.wmbus").addHandler(handler)
    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("gateway.wmbus").removeHandler(handler)
        line.stop()
    assert [r.meter_id for r in taken] == ["FLAT-2"] * 3, taken
    assert len(warned) == 1, warned
