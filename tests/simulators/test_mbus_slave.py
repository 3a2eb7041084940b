"""The M-Bus meter and bus without a wire: what each master frame gets, per EN 13757-2/-3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols.mbus import (
    RecordSpec,
    build_req_ud2,
    build_snd_nke,
    build_snd_ud_select,
    decode_frame,
    link,
)
from firmware_protocols.mbus.build import build_user_data
from simulators.events import Leak, LowBattery
from simulators.mbus_bus import MBUS_LINE, MBusBus, collide, corrupt_mbus_checksum
from simulators.mbus_slave import MBusWaterMeter
from simulators.meter_model import MeterModel
from simulators.serial_line import Reply
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

INSTALLED = datetime(2025, 12, 20, tzinfo=UTC)
NOW = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)
ACK = b"\xe5"


def meter(n: int, primary: int | None = None) -> MBusWaterMeter:
    model = MeterModel(f"MB{n:06d}", installed=INSTALLED, seed=n, initial_m3=10.0 * n)
    return MBusWaterMeter(model, n if primary is None else primary, f"2600{n:04d}", turnaround_bits=11 + n)


def records(frame: bytes) -> dict[tuple[str, int], Any]:
    return {(r["quantity"], r["storage"]): r["value"] for r in decode_frame(frame)["records"]}


def test_readout_follows_the_meter_model_with_due_date_and_monthly_history() -> None:
    m = meter(1)
    assert isinstance(m.meter, MeterModel)
    m.meter.inject(Leak(start=NOW - timedelta(days=2), rate_lph=30.0))
    m.meter.inject(LowBattery(start=NOW - timedelta(hours=1)))
    bus = MBusBus([m])
    truth = m.meter.read(NOW)
    first = bus.handle(build_req_ud2(1, fcb=True), NOW)
    assert first is not None
    head = decode_frame(first.data)
    assert (head["id"], head["manufacturer"], head["medium"], head["a_field"]) == ("26000001", "AQM", "water", 1)
    assert head["more_records_follow"] is True
    assert head["status"] & 0x04  # power low (EN 13757-3 status field)
    values = records(first.data)
    assert values[("volume", 0)] == pytest.approx(truth.volume_m3, abs=1e-9)
    assert values[("flow", 0)] == pytest.approx(round(truth.flow_m3h, 3), abs=1e-9)
    assert values[("datetime", 0)] == "2026-03-04T03:30"
    assert values[("error_flags", 0)] & 0b100001 == 0b100001  # leak and low_battery bits
    assert values[("date", 1)] == "2026-01-01"
    assert values[("volume", 1)] == pytest.approx(m.meter.volume_m3(datetime(2026, 1, 1, tzinfo=UTC)), abs=1e-9)

    second = bus.handle(build_req_ud2(1, fcb=False), NOW)  # FCB toggled: the next telegram
    assert second is not None
    history = records(second.data)
    assert decode_frame(second.data)["more_records_follow"] is False
    months = {history[("date", s)]: history[("volume", s)] for s in (2, 3, 4)}
    assert sorted(months) == ["2026-01-01", "2026-02-01", "2026-03-01"]  # the months since installation
    for day, volume in months.items():
        assert volume == pytest.approx(m.meter.volume_m3(datetime.fromisoformat(day).replace(tzinfo=UTC)), abs=1e-9)
    assert ("volume", 5) not in history  # before installation: nothing stored


def test_fcb_repeat_resends_the_same_frame_and_snd_nke_restarts_the_sequence() -> None:
    m = meter(2)
    bus = MBusBus([m])
    first = bus.handle(build_req_ud2(2, fcb=True), NOW)
    repeat = bus.handle(build_req_ud2(2, fcb=True), NOW + timedelta(minutes=5))
    assert first is not None and repeat is not None
    assert repeat.data == first.data  # the master lost the answer: same bytes, same access number
    nxt = bus.handle(build_req_ud2(2, fcb=False), NOW)
    assert nxt is not None and decode_frame(nxt.data)["access_no"] == decode_frame(first.data)["access_no"] + 1
    again = bus.handle(build_req_ud2(2, fcb=True), NOW)  # after the last telegram: the first again
    assert again is not None and decode_frame(again.data)["more_records_follow"] is True
    assert bus.handle(build_req_ud2(2, fcb=False), NOW) is not None  # now telegram 2
    reset = bus.handle(build_snd_nke(2), NOW)
    assert reset is not None and reset.data == ACK
    after = bus.handle(build_req_ud2(2, fcb=False), NOW)  # after SND_NKE any FCB starts at telegram 1
    assert after is not None and decode_frame(after.data)["more_records_follow"] is True


def test_secondary_selection_wildcards_and_deselection() -> None:
    meters = [meter(n) for n in (11, 12, 21)]
    bus = MBusBus(meters)
    one = bus.handle(build_snd_ud_select("26000012"), NOW)
    assert one is not None and one.data == ACK
    read = bus.handle(build_req_ud2(0xFD, fcb=True), NOW)
    assert read is not None and decode_frame(read.data)["id"] == "26000012"
    assert bus.handle(build_snd_ud_select("26000099"), NOW) is None  # nobody matches: all deselected
    assert bus.handle(build_req_ud2(0xFD, fcb=False), NOW) is None
    two = bus.handle(build_snd_ud_select("260000F1"), NOW)  # 26000011 and 26000021
    assert two is not None and two.data != ACK  # a collision: not one clean E5h
    assert bus.handle(build_snd_ud_select("2600001F", manufacturer="XYZ"), NOW) is None  # manufacturer differs
    bus.handle(build_snd_ud_select("26000021"), NOW)
    nke = bus.handle(build_snd_nke(0xFD), NOW)  # SND_NKE to FDh deselects
    assert nke is not None and nke.data == ACK
    assert bus.handle(build_req_ud2(0xFD, fcb=True), NOW) is None


def test_broadcasts_and_bad_frames() -> None:
    meters = [meter(n) for n in (1, 2)]
    bus = MBusBus(meters)
    assert bus.handle(build_snd_nke(0xFF), NOW) is None  # FFh: everybody listens, nobody answers
    both = bus.handle(build_req_ud2(0xFE, fcb=True), NOW)  # FEh: everybody answers at once
    assert both is not None
    with pytest.raises(ValueError):
        decode_frame(both.data)
    spoilt = bytearray(build_req_ud2(1, fcb=True))
    spoilt[3] ^= 0x01  # checksum
    assert bus.handle(bytes(spoilt), NOW) is None
    assert bus.handle(b"\x10\x5b", NOW) is None


def test_collisions_combine_bit_streams_like_the_bus_current() -> None:
    assert collide([(0, ACK)], MBUS_LINE) == ACK
    assert collide([(0, ACK), (3, ACK)], MBUS_LINE) != ACK
    assert collide([(0, ACK), (40, ACK)], MBUS_LINE) == ACK + ACK  # far apart: two clean characters
    assert collide([(0, b"\xff"), (0, b"\x00")], MBUS_LINE) == b"\x00"  # a 0 (space) wins


def test_wire_faults_per_meter_identification() -> None:
    meters = [meter(n) for n in (1, 2)]
    plan = WireFaultPlan(
        [
            WireFault(WireFaultKind.BAD_CHECKSUM, address=26000001, limit=1),
            WireFault(WireFaultKind.ABSENT, address=26000002, end=NOW + timedelta(minutes=10)),
        ]
    )
    bus = MBusBus(meters, faults=plan)
    bad = bus.handle(build_req_ud2(1, fcb=True), NOW)
    assert bad is not None
    with pytest.raises(ValueError, match="checksum"):
        decode_frame(bad.data)
    assert bus.handle(build_snd_ud_select("26000002"), NOW) is None  # absent: hears nothing
    assert not meters[1].selected
    assert bus.handle(build_snd_ud_select("26000002"), NOW + timedelta(minutes=11)) is not None  # back
    assert corrupt_mbus_checksum(ACK) == ACK


@given(st.lists(st.integers(0, 330), min_size=2, max_size=6, unique=True))
def test_two_or_more_acks_at_different_times_never_read_as_one(offsets: list[int]) -> None:
    """The premise of the wildcard search: several E5h on the line are never one clean E5h."""
    assert collide([(o, ACK) for o in offsets], MBUS_LINE) != ACK


def _set_address(bus: MBusBus, old: int, new: int) -> Reply | None:
    """SND_UD CI 51h with a bus-address record (VIF 7Ah): what a technician's tool sends on site."""
    return bus.handle(link.build_long(link.SND_UD, old, 0x51, build_user_data([RecordSpec("int16", 0x7A, new)])), NOW)


def _read_selected(bus: MBusBus, identification: str) -> bool:
    selected = bus.handle(build_snd_ud_select(identification), NOW)
    return selected is not None and bus.handle(build_req_ud2(0xFD, fcb=True), NOW) is not None


def test_a_wire_fault_is_the_meters_own_at_a_shared_or_changed_primary_address() -> None:
    """Unconfigured meters share primary address 0 and a master may re-address a meter: a fault meant
    for one meter must hit that meter, and only it."""
    shared = [meter(1, primary=0), meter(2, primary=0)]
    bus = MBusBus(shared, faults=WireFaultPlan([WireFault(WireFaultKind.ABSENT, address=26000001)]))
    assert not _read_selected(bus, "26000001")
    assert _read_selected(bus, "26000002")

    moved = [meter(1), meter(2, primary=0)]
    bus = MBusBus(moved, faults=WireFaultPlan([WireFault(WireFaultKind.NO_REPLY, address=26000001)]))
    assert _set_address(bus, 1, 7) is None  # the fault's meter: its acknowledgement is lost, the change made
    ack = _set_address(bus, 0, 1)
    assert ack is not None and (ack.data, ack.address) == (ACK, 26000002)
    assert [m.primary_address for m in moved] == [7, 1]
    assert bus.handle(build_req_ud2(7, fcb=True), NOW) is None
    assert bus.handle(build_req_ud2(1, fcb=True), NOW) is not None  # the other meter, now at 1


def test_absent_follows_its_probability_and_limit_and_is_logged() -> None:
    """An absent meter hears nothing, decided once per request it would have heard, as the rule says."""
    never = WireFaultPlan([WireFault(WireFaultKind.ABSENT, address=26000001, probability=0.0)], seed=1)
    bus = MBusBus([meter(1)], faults=never)
    assert all(bus.handle(build_req_ud2(1, fcb=i % 2 == 0), NOW) is not None for i in range(10))
    assert never.log == []

    once = WireFaultPlan([WireFault(WireFaultKind.ABSENT, address=26000001, limit=1)])
    bus = MBusBus([meter(1), meter(2)], faults=once)
    assert bus.handle(build_req_ud2(2, fcb=True), NOW) is not None  # not a request meter 1 would hear
    answered = [bus.handle(build_req_ud2(1, fcb=i % 2 == 0), NOW) is not None for i in range(10)]
    assert answered == [False] + [True] * 9
    assert [(a.address, a.kind) for a in once.log] == [(26000001, WireFaultKind.ABSENT)]

    half = WireFaultPlan([WireFault(WireFaultKind.ABSENT, address=26000001, probability=0.5)], seed=3)
    bus = MBusBus([meter(1)], faults=half)
    heard = sum(bus.handle(build_req_ud2(1, fcb=i % 2 == 0), NOW) is not None for i in range(200))
    assert 60 < heard < 140 and len(half.log) == 200 - heard


def data_of(reply: Reply | None) -> bytes:
    assert reply is not None
    return reply.data


@settings(max_examples=30, deadline=None)
@given(st.integers(-(2**15), 2**15 - 1) | st.integers(240, 260))
def test_only_a_primary_address_is_taken_from_a_data_send(new: int) -> None:
    """CI 51h sets the primary address to 0..250; anything else (253 is FDh, 300 no address at all) is
    acknowledged and ignored, so the meter still answers, and a broadcast still gets every answer."""
    meters = [meter(1), meter(2)]
    bus = MBusBus(meters)
    ack = _set_address(bus, 1, new)
    assert ack is not None and ack.data == ACK
    expected = new if 0 <= new <= 250 else 1
    assert meters[0].primary_address == expected
    assert bus.handle(build_snd_ud_select("26000001"), NOW) is not None
    assert decode_frame(data_of(bus.handle(build_req_ud2(0xFD, fcb=True), NOW)))["a_field"] == expected
    assert bus.handle(build_req_ud2(0xFE, fcb=False), NOW) is not None  # both answer: a collision, not an error
