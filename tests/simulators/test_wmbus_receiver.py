"""A wM-Bus receiver's serial stream on the pty, read like a gateway reads an iM871A.

The reader here is the receiver stream parser and the telegram decoder the gateway uses; the key
decides what can be read, as with real OMS meters in mode 5.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import serial

from firmware_protocols.wmbus import decode_telegram
from firmware_protocols.wmbus.errors import DecodeError
from firmware_protocols.wmbus.receiver import ReceivedTelegram, ReceiverStreamParser, build_message, parse_message
from simulators.events import Leak
from simulators.meter_model import MeterModel
from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan
from simulators.wmbus_meter import WMBusMeter
from simulators.wmbus_receiver import RECEIVER_LINE, WMBusReceiverSimulator

INSTALLED = datetime(2025, 12, 20, tzinfo=UTC)
NOW = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)
KEYS = {f"7700000{n}": bytes([n] * 16) for n in (1, 2, 3)}


def meters(interval_s: float = 0.15) -> list[WMBusMeter]:
    out = []
    for n, (ident, key) in enumerate(KEYS.items(), start=1):
        model = MeterModel(f"W{n}", installed=INSTALLED, seed=n, initial_m3=5.0 * n)
        model.read(NOW)
        out.append(WMBusMeter(model, ident, key, interval_s=interval_s))
    assert isinstance(out[0].meter, MeterModel)
    out[0].meter.inject(Leak(start=NOW - timedelta(days=2), rate_lph=25.0))
    return out


def listen(port: str, seconds: float) -> tuple[list[ReceivedTelegram], ReceiverStreamParser]:
    parser = ReceiverStreamParser(require_fcs=True)
    got: list[ReceivedTelegram] = []
    with serial.Serial(port, RECEIVER_LINE.baudrate, timeout=0.05) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            chunk = s.read(4096)
            if chunk:
                got += parser.feed(chunk)
    return got, parser


def test_receiver_streams_every_meters_encrypted_telegrams_at_its_interval() -> None:
    fleet = meters()
    with WMBusReceiverSimulator(fleet, clock=lambda: NOW) as sim:
        received, parser = listen(sim.port, 1.2)
    assert parser.fcs_errors == 0 and parser.discarded_bytes == 0
    by_meter: dict[str, list[dict]] = {}
    for r in received:
        decoded = decode_telegram(r.telegram, KEYS, crcs=False)
        by_meter.setdefault(decoded["id"], []).append(decoded)
        assert r.rssi is not None and r.timestamp is not None
    assert set(by_meter) == set(KEYS)
    for meter in fleet:
        telegrams = by_meter[meter.identification]
        assert len(telegrams) >= 4  # every 0.15 s for 1.2 s, the first after a stagger
        assert [t["access_no"] for t in telegrams] == list(range(1, len(telegrams) + 1))
        truth = meter.meter.read(NOW)
        for t in telegrams:
            assert t["security_mode"] == 5 and t["manufacturer"] == "AQM" and t["medium"] == "water"
            values = {(r["quantity"], r["storage"]): r["value"] for r in t["records"]}
            assert values[("volume", 0)] == pytest.approx(truth.volume_m3, abs=1e-9)
            assert values[("flow", 0)] == pytest.approx(round(truth.flow_m3h, 3), abs=1e-9)
            assert values[("date", 1)] == "2026-01-01"
            assert bool(values[("error_flags", 0)] & 1) == ("leak" in truth.alarms)
    assert "leak" in fleet[0].meter.read(NOW).alarms


def test_back_to_back_telegrams_leave_no_faster_than_57600_baud() -> None:
    fleet = meters(interval_s=3600.0)  # the scheduler stays quiet; the test makes them send
    with WMBusReceiverSimulator(fleet, clock=lambda: NOW) as sim, serial.Serial(sim.port, 57600, timeout=0) as s:
        t_push = time.monotonic()
        sent = sum(len(sim.transmit(m)) for m in fleet * 3)
        got, t_last = 0, 0.0
        deadline = time.monotonic() + 2.0
        while got < sent and time.monotonic() < deadline:
            chunk = s.read(4096)
            if chunk:
                got, t_last = got + len(chunk), time.monotonic()
            else:
                time.sleep(0.0005)
    assert got == sent
    # 8N1: 10 bits a character; all of it had to pass the line after the first telegram was handed over
    assert t_last - t_push >= sent * 10 / 57600


def test_without_the_right_key_nothing_is_readable() -> None:
    meter = meters()[1]
    telegram = meter.telegram(NOW)
    with pytest.raises(DecodeError):
        decode_telegram(telegram, {meter.identification: bytes(16)}, crcs=False)
    with pytest.raises(DecodeError):
        decode_telegram(telegram, {}, crcs=False)
    on_air = meter.radio_telegram(NOW)  # with the link layer's CRCs, as sent
    assert (
        decode_telegram(on_air, KEYS, crcs=True)["access_no"]
        == decode_telegram(telegram, KEYS, crcs=False)["access_no"]
    )


def test_wire_faults_lose_and_spoil_telegrams_per_meter() -> None:
    plan = WireFaultPlan(
        [WireFault(WireFaultKind.BAD_CHECKSUM, address=77000001), WireFault(WireFaultKind.ABSENT, address=77000002)]
    )
    with WMBusReceiverSimulator(meters(0.1), faults=plan, clock=lambda: NOW) as sim:
        received, parser = listen(sim.port, 0.8)
    ids = {decode_telegram(r.telegram, KEYS, crcs=False)["id"] for r in received}
    assert ids == {"77000003"}
    assert parser.fcs_errors > 0  # 77000001's messages arrived with a spoilt CRC-16 and were dropped


def test_answers_the_host_interface_a_driver_starts_with() -> None:
    with WMBusReceiverSimulator([], clock=lambda: NOW) as sim, serial.Serial(sim.port, 57600, timeout=1.0) as s:
        s.write(build_message(0x01, 0x01, b""))  # PING_REQ
        ping = parse_message(s.read(6))
        assert (ping.fields.value.control.endpoint, ping.fields.value.message_id) == (0x01, 0x02)
        s.write(build_message(0x01, 0x0F, b""))  # GET_DEVICEINFO_REQ
        info = parse_message(s.read(6 + 8))
        assert info.fields.value.message_id == 0x10 and info.fields.value.payload[0] == 0x33  # iM871A


def _read_for(s: serial.Serial, seconds: float) -> list[ReceivedTelegram]:
    parser = ReceiverStreamParser(require_fcs=True)
    got: list[ReceivedTelegram] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got += parser.feed(s.read(4096))
    return got


def test_telegrams_sent_while_no_one_has_the_port_open_are_not_kept_for_later() -> None:
    """A receiver's port no one has open keeps nothing: a gateway starting (or restarting) late must not
    get the telegrams of the time it was away all at once, each stamped with the time it reads them."""
    fleet = meters(interval_s=3600.0)  # the scheduler stays quiet; the test makes them send
    with WMBusReceiverSimulator(fleet, clock=lambda: NOW) as sim:
        for m in fleet * 20:
            sim.transmit(m)
        time.sleep(0.3)
        for _ in range(2):  # the gateway starts, and later restarts
            with serial.Serial(sim.port, 57600, timeout=0.05) as s:
                assert _read_for(s, 0.3) == []
                sim.transmit(fleet[1])
                fresh = _read_for(s, 0.3)
            assert [decode_telegram(r.telegram, KEYS, crcs=False)["id"] for r in fresh] == ["77000002"]
            sim.transmit(fleet[0])  # while it is away
            time.sleep(0.2)
