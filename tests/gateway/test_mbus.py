"""Wired M-Bus on a simulated line: SND_NKE first, FCB toggling, multi-telegram reads with a repeat,
secondary addressing, and the secondary-address search behind ``aquami gateway scan``."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import serial

from gateway.config import MBusBusConfig, parse_config_text
from gateway.mbus import MBusTransport
from gateway.scan import FoundMBus, mbus_snippet
from gateway.transport import PollError
from simulators.mbus_slave import ERROR_FLAG_BITS
from simulators.serial_line import LineSettings, SerialLine, pty_accepts_parity
from tests.gateway.helpers import bus_config_text, run_config_until, running, until
from tests.gateway.mbus_slaves import MBusSlave, MBusSlaves

PARITY = serial.PARITY_EVEN if pty_accepts_parity() else serial.PARITY_NONE
AQUAMI = str(Path(sys.executable).with_name("aquami"))


#: the answer window (answer_timeout_s) of a test that waits for answers: the simulated slaves answer
#: from a thread of the test's process, on a loaded machine often later than the standard's 84 ms at
#: 9600 baud (no answer, then the gateway's retry and SND_NKE again); silent requests take this long
WIDE_ANSWER_S = 1.0
#: a search's: most of its requests are answered by no slave, each taking the whole window (the
#: search and scan test's some 150 requests take 50 s at 0.3 s, 160 s at 1.0 s)
SEARCH_ANSWER_S = 0.3


def mbus_bus(name: str, device: str, answer_timeout_s: float | None = None) -> dict[str, Any]:
    bus: dict[str, Any] = {"name": name, "protocol": "mbus", "device": device, "baudrate": 9600, "parity": PARITY}
    if answer_timeout_s is not None:
        bus["answer_timeout_s"] = answer_timeout_s
    return bus


def fcb_sequence(slave: MBusSlave) -> list[bool]:
    return [fcb for function, fcb in slave.requests if function == "REQ_UD2"]


@pytest.mark.services
def test_primary_secondary_and_multi_telegram_reads(tmp_path: Path, mosquitto) -> None:
    single = MBusSlave(1, "11110001", 123.456, status=0x04)
    multi = MBusSlave(2, "11110002", 300.0, telegrams=3, drop_once_at=1)
    secondary = MBusSlave(0, "22223333", 42.5)
    line = SerialLine(MBusSlaves([single, multi, secondary]), LineSettings(baudrate=9600, parity="E")).start()
    text = bus_config_text(
        mosquitto.url,
        tmp_path / "s.sqlite",
        {**mbus_bus("mbus-1", line.port), "poll_interval_s": 1.0, "retries": 1},
        [
            {"meter_id": "HOUSE-1", "address": 1},
            {"meter_id": "HOUSE-2", "address": 2},
            {"meter_id": "HOUSE-3", "secondary_address": "22223333"},
        ],
        gateway_id="gw-mbus",
    )
    config = parse_config_text(text)
    bus = config.buses[0]
    assert isinstance(bus, MBusBusConfig) and bus.timeout_s == pytest.approx(
        330 / 9600 + 0.05 + 261 * 11 / 9600, abs=1e-3
    )
    assert bus.answer_timeout_s == pytest.approx(330 / 9600 + 0.05)  # EN 13757-2 clause 5.4
    # run with more than those defaults: an answer a loaded machine's simulator sends late must not
    # be a failed attempt here (the gateway then sends SND_NKE again, which this test counts)
    config = replace(config, buses=(replace(bus, timeout_s=2.0, answer_timeout_s=WIDE_ANSWER_S),))
    try:
        # 4 exchanges with HOUSE-1 at 1 s, and 2 readings of each: waited for (5 s, or 3.5 s, may give fewer on a
        # loaded machine: 3.5 s gave 3)
        gateway, taken = run_config_until(
            config,
            lambda taken: (
                len(fcb_sequence(single)) >= 4
                and all(sum(r.meter_id == m for r in taken) >= 2 for m in ("HOUSE-1", "HOUSE-2", "HOUSE-3"))
            ),
        )
    finally:
        line.stop()
    by_meter = {
        meter_id: [r for r in taken if r.meter_id == meter_id] for meter_id in ("HOUSE-1", "HOUSE-2", "HOUSE-3")
    }
    assert all(len(readings) >= 2 for readings in by_meter.values()), {k: len(v) for k, v in by_meter.items()}
    first = by_meter["HOUSE-1"][0].to_json()
    assert first["volume_m3"] == 123.456 and first["flow_m3h"] == 0.25 and first["alarms"] == ["low_battery"]
    assert first["source"] == {"protocol": "mbus", "bus": "mbus-1", "address": 1}
    assert {r.volume_m3 for r in by_meter["HOUSE-2"]} == {300.0}  # the current volume, from the last telegram
    assert by_meter["HOUSE-3"][0].to_json()["source"]["address"] == "22223333"
    assert single.requests[0] == ("SND_NKE", False) and multi.requests[0] == ("SND_NKE", False)
    assert ("SND_NKE", False) not in single.requests[1:]  # once, on start: no failures in between
    assert fcb_sequence(single)[:4] == [True, False, True, False]  # toggled after every exchange
    sequence = fcb_sequence(multi)
    repeats = [i for i in range(1, len(sequence)) if sequence[i] == sequence[i - 1]]
    assert len(repeats) == 1, sequence  # the lost second telegram was asked for again with the same FCB
    assert sum(1 for function, _ in multi.requests if function == "SND_NKE") == 1
    assert gateway.health.meters["HOUSE-2"].failed_polls == 0


def test_secondary_address_search_and_scan_command(tmp_path: Path) -> None:
    identifications = ["12340001", "12340002", "56780003", "12350004"]
    slaves = [MBusSlave(0, ident, 1.0) for ident in identifications]
    line = SerialLine(MBusSlaves(slaves), LineSettings(baudrate=9600, parity="E")).start()
    config_file = tmp_path / "gw.toml"
    config_file.write_text(
        bus_config_text(
            "mqtt://127.0.0.1:1", tmp_path / "s.sqlite", mbus_bus("m", line.port, SEARCH_ANSWER_S), [], gateway_id="g"
        )
    )
    # The search itself is the scan's (gateway.mbus.MBusTransport.search_blocking): run once, through
    # the command, where it ran twice, each some 150 requests, most waiting out the answer window.
    try:
        import subprocess

        done = subprocess.run(
            [AQUAMI, "gateway", "scan", str(config_file), "--bus", "m", "--output", str(tmp_path / "found.toml")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        line.stop()
    assert done.returncode == 0, done.stderr
    snippet = (tmp_path / "found.toml").read_text()
    combined = parse_config_text(config_file.read_text() + "\n" + snippet)
    assert sorted(m.secondary_address or "" for m in combined.meters) == sorted(identifications)
    # each table says what the meter read, as the Modbus snippet does; these send no error flags record
    assert snippet.count("it read 1.0 m3") == len(identifications) and "error_flags" not in snippet, snippet


def test_a_search_says_each_meter_s_reading_and_the_error_flags_map_it_needs(tmp_path: Path) -> None:
    """``gateway scan`` of an M-Bus line wrote only each meter's secondary address: nothing read, and
    nothing said of a meter's error flags record, which the gateway reads only by a map of its bits
    (``error_flags``), so a meter flagging a reverse flow was configured from the snippet and its
    alarm reached no one. The simulated meters send the record; one of them flags a reverse flow."""
    from datetime import UTC, datetime, timedelta

    from simulators.events import ReverseFlow
    from simulators.mbus_bus import MBusBus
    from simulators.mbus_slave import MBusWaterMeter
    from simulators.meter_model import MeterModel

    now = datetime.now(UTC)
    models = [MeterModel(f"H{n}", installed=now - timedelta(days=2), seed=n) for n in (1, 2)]
    models[1].inject(ReverseFlow(start=now - timedelta(hours=1), end=None, rate_lph=60.0))
    meters = [MBusWaterMeter(model, 0, f"1234000{n}") for n, model in enumerate(models, start=1)]
    settings = LineSettings(baudrate=9600, parity="E")
    line = SerialLine(MBusBus(meters, settings=settings), settings).start()
    try:
        text = bus_config_text(
            "mqtt://127.0.0.1:1", tmp_path / "s.sqlite", mbus_bus("m", line.port, SEARCH_ANSWER_S), [], gateway_id="g"
        )
        bus = parse_config_text(text).buses[0]
        assert isinstance(bus, MBusBusConfig)
        transport = MBusTransport(bus)
        began = datetime.now(UTC)
        found = sorted(transport.search_blocking("123400"), key=lambda f: f.identification)
        ended = datetime.now(UTC)
        transport.line.close()
    finally:
        line.stop()
    assert [f.identification for f in found] == ["12340001", "12340002"]
    # each meter's register as the model had it at some moment of the search (read then, not after it:
    # under load a search lasts long enough for a household's draw or the reverse flow to move it)
    moments = [began + (ended - began) * k / 400 for k in range(401)]
    for f, model in zip(found, models, strict=True):
        registers = [model.read(at).volume_m3 for at in moments]
        assert f.volume_m3 is not None and min(abs(f.volume_m3 - r) for r in registers) <= 0.002, (f, registers)
    assert [f.error_flags for f in found] == [0, 1 << ERROR_FLAG_BITS.index("reverse_flow")]
    snippet = mbus_snippet("m", found)
    tables = snippet.split("[[meters]]")[1:]
    assert f"it read {found[0].volume_m3} m3" in tables[0] and f"it read {found[1].volume_m3} m3" in tables[1]
    assert "error flags record (now 0x0: no bit set)" in tables[0], snippet
    assert "error flags record (now 0x8: bit 3 set)" in tables[1], snippet
    assert "# error_flags = [" in tables[1]
    meters_back = parse_config_text(text + "\n" + snippet).meters  # the hints are comments: it loads back
    assert [m.secondary_address for m in meters_back] == ["12340001", "12340002"]
    assert all(m.error_flags == () for m in meters_back)  # the map is the technician's, from the data sheet
    uncommented = snippet.replace("# error_flags = ", "error_flags = ")  # as the technician would, once checked
    assert parse_config_text(text + "\n" + uncommented).meters[1].error_flags == ("leak", "burst", "", "reverse_flow")


def test_a_meter_a_search_found_without_a_reading_is_said_with_why() -> None:
    snippet = mbus_snippet("m", [FoundMBus("12340001", None, "no current volume record in its answer")])
    assert "# replace with the meter's id; it gave no reading: no current volume record in its answer" in snippet


def test_the_scan_command_on_an_m_bus_line_replies_as_its_schema_says(tmp_path: Path) -> None:
    """The M-Bus form of the scan reply (aquami/contracts/commands.schema.json): the secondary
    addresses found and their snippet. One meter on the line answers the first wildcard selection."""
    import asyncio
    import json

    from aquami.contracts.commands import reply_errors
    from gateway.service import Gateway
    from tests.services import free_port

    line = SerialLine(MBusSlaves([MBusSlave(0, "12340001", 1.0)]), LineSettings(baudrate=9600, parity="E")).start()
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        mbus_bus("m", line.port, WIDE_ANSWER_S),
        [],
        gateway_id="gw-mbus-scan",
    )
    gateway = Gateway(parse_config_text(text))

    async def scenario() -> list[dict[str, Any]]:
        async with running(gateway):
            await until(lambda: gateway._commands is not None and "m" in gateway.schedulers, 10)
            assert gateway._commands is not None
            await gateway._commands._run("scan", b'{"bus": "m", "request_id": 7}')
        return [json.loads(m.payload) for m in gateway.publisher._outbox if m.topic.endswith("/scan/reply")]

    try:
        [reply] = asyncio.run(scenario())
    finally:
        line.stop()
    assert reply_errors("scan", reply) == [], reply
    assert (reply["request_id"], reply["ok"], reply["found"]) == (7, True, ["12340001"])
    assert 'secondary_address = "12340001"' in reply["snippet"]


def test_a_reading_takes_the_backward_volume_whatever_the_record_order() -> None:
    """EN 13757-3 VIF 13h with VIFE 3Ch ("accumulation of the absolute value of negative
    contributions") is the meter's backward register; it never stands in for the volume."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus.build import encode_record
    from firmware_protocols.mbus.normalise import describe
    from firmware_protocols.records import DataRecord
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records

    assert describe(0x0C, [], 0x13, [0x3C], None).quantity == "volume_backward"
    backward = DataRecord("volume_backward", "m3", 0.042).to_json()
    volume = DataRecord("volume", "m3", 123.456).to_json()
    stored = DataRecord("volume_backward", "m3", 0.040, storage=1).to_json()
    meter = MeterConfig(meter_id="HOUSE-9", unit_id=9)
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for records in ([backward, volume], [stored, volume, backward]):
        reading = reading_from_records(meter, [{"records": records, "status": 0}], at, "mbus-1")
        assert (reading.volume_m3, reading.reverse_volume_m3) == (123.456, 0.042)
        assert reading.to_json()["reverse_volume_m3"] == 0.042
    plain = reading_from_records(meter, [{"records": [volume], "status": 0}], at, "mbus-1")
    assert plain.reverse_volume_m3 is None and "reverse_volume_m3" not in plain.to_json()
    assert encode_record(DataRecord("volume_backward", "m3", 0.042)) is not None  # the builder knows it too


def test_a_value_outside_the_contract_is_left_out_or_fails_the_poll() -> None:
    """A flow of 0x7FFFFFFF litres per hour (a meter's "no value") would have the collector refuse
    the whole message the reading travels in: it is left out; a volume out of bounds fails the poll."""
    import json
    from datetime import UTC, datetime

    from aquami.contracts.reads import schema_errors
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records
    from gateway.publisher import encode_batch
    from gateway.transport import PollError

    def record(quantity: str, unit: str, value: float) -> dict[str, Any]:
        return {
            "storage": 0,
            "tariff": 0,
            "function": "instantaneous",
            "quantity": quantity,
            "unit": unit,
            "value": value,
        }

    meter = MeterConfig("FLAT-1", 1, "mbus")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    telegram = {"status": 0, "records": [record("volume", "m3", 12.5), record("flow", "m3/h", 2147483.647)]}
    reading = reading_from_records(meter, [telegram], at, "mbus-1")
    assert (reading.volume_m3, reading.flow_m3h) == (12.5, None)
    assert schema_errors(json.loads(encode_batch("gw", 1, [json.dumps(reading.to_json())]))) == []
    huge = {"status": 0, "records": [record("volume", "m3", 9.2e18)]}
    with pytest.raises(PollError, match="outside the reads contract"):
        reading_from_records(meter, [huge], at, "mbus-1")


def test_a_reading_takes_the_meter_s_own_volume_not_a_subunit_s() -> None:
    """EN 13757-3 clause 6.3.3: a DIFE's subunit bit names another device behind the meter (a
    second register, a sub-meter). Its volume, listed first, was taken for the meter's own."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.build import build_rsp_ud
    from firmware_protocols.records import DataRecord
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records

    records = [DataRecord("volume", "m3", 999.0, subunit=1), DataRecord("volume", "m3", 12.0)]
    telegram = decode_frame(build_rsp_ud(5, "12345678", "KAM", 1, "water", 0x10, 0, records))
    assert [r["subunit"] for r in telegram["records"]] == [1, 0]
    meter, at = MeterConfig("FLAT-5", 5, "mbus"), datetime(2026, 1, 1, tzinfo=UTC)
    reading = reading_from_records(meter, [telegram], at, "mbus-1")
    assert reading.volume_m3 == 12.0


def test_a_reading_takes_the_current_tariff_s_volume_not_another_tariff_s() -> None:
    """EN 13757-3 clause 6.3.3: a DIFE's tariff is another register of the meter (a night tariff, say).
    Its volume listed before the tariff-0 one is not the meter's current reading."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.build import build_rsp_ud
    from firmware_protocols.records import DataRecord
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records

    records = [DataRecord("volume", "m3", 999.0, tariff=1), DataRecord("volume", "m3", 12.0)]
    telegram = decode_frame(build_rsp_ud(5, "12345678", "KAM", 1, "water", 0x10, 0, records))
    assert [(r["tariff"], r["value"]) for r in telegram["records"]] == [(1, 999.0), (0, 12.0)]
    meter, at = MeterConfig("FLAT-5", 5, "mbus"), datetime(2026, 1, 1, tzinfo=UTC)
    assert reading_from_records(meter, [telegram], at, "mbus-1").volume_m3 == 12.0


def test_a_volume_marked_no_error_is_read_and_one_marked_bad_is_not() -> None:
    """EN 13757-3:2018 Table 16: a combinable VIFE E000 0000 says "no error", the value is valid;
    01h..1Fh mark it bad. A volume sent with VIFE 00h was never read (every poll failed: "no current
    volume record"); one marked with an error code must not become the reading."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.link import build_long
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records

    header = bytes.fromhex("78563412 E61E 01 07 55 00 0000")  # id 12345678, GWF, water, status 0

    def telegram(body: str) -> dict[str, Any]:
        return decode_frame(build_long(0x08, 1, 0x72, header + bytes.fromhex(body)))

    meter, at = MeterConfig("FLAT-1", 1, "mbus"), datetime(2026, 1, 1, tzinfo=UTC)
    # BCD8, VIF 13h (litres) with the E bit, VIFE 00h: 12345 l
    assert reading_from_records(meter, [telegram("0C93 00 45230100")], at, "mbus-1").volume_m3 == 12.345
    # VIFE 18h "data error": not the reading, on its own or before a valid volume
    with pytest.raises(PollError, match="no current volume record"):
        reading_from_records(meter, [telegram("0C93 18 99999999")], at, "mbus-1")
    both = telegram("0C93 18 99999999 0C13 45230100")
    assert reading_from_records(meter, [both], at, "mbus-1").volume_m3 == 12.345


@pytest.mark.parametrize(
    ("status", "alarms"),
    [
        (0x00, []),
        (0x04, ["low_battery"]),
        (0x08, ["meter_error"]),  # permanent error
        (0x10, ["meter_error"]),  # temporary error
        (0x18, ["meter_error"]),  # both: one alarm
        (0x14, ["low_battery", "meter_error"]),
        (0x01, []),  # bits 1..0 = 01: application busy, it answers later
        (0x02, ["meter_error"]),  # 10: any application error
        (0x03, ["meter_error"]),  # 11: abnormal condition (a water meter's permanent flow)
        (0x0B, ["meter_error"]),  # abnormal condition and permanent error: one alarm
        (0x06, ["low_battery", "meter_error"]),
        (0xE0, []),  # bits 7..5: manufacturer specific
    ],
)
def test_the_status_byte_s_power_low_and_error_bits_are_alarms(status: int, alarms: list[str]) -> None:
    """EN 13757-3 clause 6.2 (EN 13757-7:2018 7.5.6): status bit 2 power low, bit 3 permanent error,
    bit 4 temporary error; bits 1..0 the application's state, 10 an application error and 11 an
    abnormal condition (status 02h and 03h gave no alarm)."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.build import build_rsp_ud
    from firmware_protocols.records import DataRecord
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records

    telegram = decode_frame(
        build_rsp_ud(5, "12345678", "KAM", 1, "water", 0x10, status, [DataRecord("volume", "m3", 12.0)])
    )
    assert telegram["status"] == status
    meter, at = MeterConfig("FLAT-5", 5, "mbus"), datetime(2026, 1, 1, tzinfo=UTC)
    reading = reading_from_records(meter, [telegram], at, "mbus-1")
    assert list(reading.alarms) == alarms and reading.volume_m3 == 12.0


def test_a_status_bit_in_any_telegram_of_a_multi_telegram_read_is_an_alarm() -> None:
    """A multi-telegram read is one reading: a status bit set in its second telegram (power low, an
    abnormal condition) was lost, only the first telegram's status byte was read."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus import decode_frame
    from firmware_protocols.mbus.build import build_rsp_ud
    from firmware_protocols.records import DataRecord
    from gateway.config import MeterConfig
    from gateway.mbus import reading_from_records

    def telegram(status: int, records: list[DataRecord]) -> dict[str, Any]:
        return decode_frame(build_rsp_ud(5, "12345678", "KAM", 1, "water", 0x10, status, records))

    meter, at = MeterConfig("FLAT-5", 5, "mbus"), datetime(2026, 1, 1, tzinfo=UTC)
    first = telegram(0x00, [DataRecord("volume", "m3", 12.0)])
    for second_status, alarms in ((0x04, ("low_battery",)), (0x03, ("meter_error",)), (0x00, ())):
        second = telegram(second_status, [DataRecord("flow", "m3/h", 0.5)])
        reading = reading_from_records(meter, [first, second], at, "mbus-1")
        assert (reading.alarms, reading.volume_m3, reading.flow_m3h) == (alarms, 12.0, 0.5)
    both = [telegram(0x10, [DataRecord("volume", "m3", 12.0)]), telegram(0x04, [])]
    assert reading_from_records(meter, both, at, "mbus-1").alarms == ("low_battery", "meter_error")


def test_a_line_reset_after_a_port_error_gives_every_meter_its_snd_nke_again() -> None:
    """EN 13757-2 clause 5.5: SND_NKE starts a meter's frame count bit afresh. A port that failed
    mid-read (an OSError, not a PollError) was reset, but the meter kept its "initialised" mark, so
    the reopened line asked it without an SND_NKE, its FCB state unknown."""
    import asyncio
    from datetime import UTC, datetime

    from firmware_protocols.mbus import build_snd_nke
    from firmware_protocols.mbus.build import build_rsp_ud
    from firmware_protocols.records import DataRecord
    from gateway.buses import attempt_once
    from gateway.config import MBusBusConfig, MeterConfig
    from gateway.mbus import MBusTransport
    from gateway.transport import PollError

    meter = MeterConfig("FLAT-7", 7, "mbus")
    bus = MBusBusConfig("mbus-1", "/dev/null", (meter,))
    transport = MBusTransport(bus, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    sent: list[bytes] = []
    failures = [OSError("Input/output error")]

    def exchange(frame: bytes) -> bytes:
        sent.append(frame)
        if frame == build_snd_nke(7):
            return bytes([0xE5])
        if failures:
            raise failures.pop()
        return build_rsp_ud(7, "00000007", "KAM", 1, "water", 1, 0, [DataRecord("volume", "m3", 3.5)])

    transport._exchange = exchange  # type: ignore[method-assign]
    transport.line.close = lambda: None  # type: ignore[method-assign]  # no port was opened

    async def two_reads() -> float:
        with pytest.raises(PollError):
            await attempt_once(transport, bus, meter)  # the port fails after the SND_NKE
        sent.clear()
        return (await attempt_once(transport, bus, meter)).volume_m3

    assert asyncio.run(two_reads()) == 3.5
    assert sent[0] == build_snd_nke(7), "the reopened line asked the meter without an SND_NKE"


def test_an_answer_from_another_primary_address_is_not_taken_for_the_meter_s() -> None:
    """A slow meter's answer that arrives late, while the next meter is asked, carries its own
    address in the A field (EN 13757-2): it was credited to the meter asked."""
    import asyncio
    from datetime import UTC, datetime

    from firmware_protocols.mbus import build_snd_nke
    from firmware_protocols.mbus.build import build_rsp_ud
    from firmware_protocols.records import DataRecord
    from gateway.buses import attempt_once
    from gateway.config import MBusBusConfig, MeterConfig
    from gateway.mbus import MBusTransport
    from gateway.transport import PollError

    meter = MeterConfig("FLAT-7", 7, "mbus")
    bus = MBusBusConfig("mbus-1", "/dev/null", (meter,), retries=0)
    transport = MBusTransport(bus, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    answers = {8: [DataRecord("volume", "m3", 900.0)], 7: [DataRecord("volume", "m3", 3.5)]}
    answering = [8, 7]  # first the late answer of meter 8, then meter 7's own

    def exchange(frame: bytes) -> bytes:
        if frame == build_snd_nke(7):
            return bytes([0xE5])
        address = answering.pop(0)
        return build_rsp_ud(address, f"{address:08d}", "KAM", 1, "water", 1, 0, answers[address])

    transport._exchange = exchange  # type: ignore[method-assign]
    transport.line.close = lambda: None  # type: ignore[method-assign]  # no port was opened

    async def two_reads() -> tuple[str, float]:
        with pytest.raises(PollError) as refused:
            await attempt_once(transport, bus, meter)
        return str(refused.value), (await attempt_once(transport, bus, meter)).volume_m3

    message, volume = asyncio.run(two_reads())
    assert "answer from address 8, not 7" in message and volume == 3.5


def test_a_reload_during_a_secondary_address_search_stops_it_instead_of_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A search holds the bus until it ends (minutes on a long line); a reload or stop waited for it,
    polling nothing meanwhile. Now the search stops at its next selection, and the scan's reply says
    so: ok=false with the PollError's line, one warning logged (before: "internal error: PollError:
    …", and a traceback in the log, as if a bug of ours)."""
    import asyncio
    import json
    import logging

    from gateway.service import Gateway
    from tests.services import free_port

    caplog.set_level(logging.INFO)
    slaves = MBusSlaves([MBusSlave(0, f"{1000 + 37 * i:04d}{i:04d}", 1.0) for i in range(12)])  # ~6 s of search
    line = SerialLine(slaves, LineSettings(baudrate=9600, parity="E")).start()
    text = bus_config_text(
        f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "s.sqlite",
        mbus_bus("m", line.port, WIDE_ANSWER_S),  # a slower search is still under way at the reload
        [],
        gateway_id="gw-search",
    )
    config = parse_config_text(text)

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        gateway = Gateway(config)
        async with running(gateway):
            await asyncio.sleep(0.2)
            assert gateway._commands is not None
            scan = asyncio.create_task(gateway._commands._run("scan", b'{"bus": "m", "request_id": "s"}'))
            await asyncio.sleep(1.0)
            await gateway.apply_config(config)
            sent = slaves.frames
            await scan
            await asyncio.sleep(0.5)
            replies = [json.loads(m.payload) for m in gateway.publisher._outbox if m.topic.endswith("/scan/reply")]
            return replies, slaves.frames - sent

    try:
        caplog.clear()
        replies, after_reload = asyncio.run(scenario())
    finally:
        line.stop()
    [reply] = replies
    assert (reply["request_id"], reply["ok"]) == ("s", False), reply
    assert reply["error"].startswith("m: search stopped, the bus is closing ("), reply
    logged = [(r.levelname, r.exc_info, r.getMessage()) for r in caplog.records if r.name == "gateway.commands"]
    assert logged == [("WARNING", None, f"command scan: {reply['error']}")], logged
    assert after_reload == 0, "the search went on talking on the line after the reload"


def test_a_meter_read_by_secondary_address_gets_snd_nke_first_and_no_stale_repeat(tmp_path: Path) -> None:
    """A meter whose last request carried FCB = 1 (another master's, or this gateway's before a
    restart) takes a first request with FCB = 1 as a repeat and sends its old telegram again, which
    the gateway stamped with the time of its own read. A meter read by primary address gets SND_NKE
    first (EN 13757-2 clause 5.3); one read by secondary address now gets it too, at FDh once
    selected. The product's meter simulator counts fresh telegrams in its access number."""
    from datetime import UTC, datetime

    from firmware_protocols.mbus import build_req_ud2, build_snd_ud_select
    from gateway.config import MeterConfig
    from simulators.mbus_bus import MBusBus
    from simulators.mbus_slave import MBusWaterMeter
    from simulators.meter_model import MeterModel

    model = MeterModel("HOUSE-9", installed=datetime(2025, 12, 1, tzinfo=UTC), seed=9, initial_m3=42.0)
    water = MBusWaterMeter(model, 0, "26009999")
    bus = MBusBus([water], settings=LineSettings(baudrate=9600, parity="E"))
    earlier = datetime.now(UTC)
    bus.handle(build_snd_ud_select("26009999"), earlier)  # a hand-held reader's last visit: FCB = 1
    bus.handle(build_req_ud2(0xFD, fcb=True), earlier)
    fresh_before = water.access_no
    line = SerialLine(bus, LineSettings(baudrate=9600, parity="E")).start()
    try:
        text = bus_config_text(
            "mqtt://127.0.0.1:1", tmp_path / "s.sqlite", mbus_bus("m", line.port, WIDE_ANSWER_S), [], gateway_id="g"
        )
        bus_config = parse_config_text(text).buses[0]
        assert isinstance(bus_config, MBusBusConfig)
        transport = MBusTransport(bus_config)
        reading = transport.read_blocking(MeterConfig("HOUSE-9", 0, "mbus", secondary_address="26009999"))
        transport.line.close()
    finally:
        line.stop()
    telegrams = 2  # the simulator's meter answers in two: the current values, then its monthly history
    assert water.access_no - fresh_before == telegrams, "a telegram was the meter's old one, sent again"
    assert reading.volume_m3 > 42.0


def test_a_search_finds_meters_whose_answers_come_far_apart_at_2400_baud(tmp_path: Path) -> None:
    """Slaves answer 11 to 330 bit times (+50 ms) after a request (EN 13757-2): at 2400 baud a second
    E5h may come 130 ms after the first. The search took the first E5h as the only one once the line
    had been quiet for 3 characters; the second was then read as the answer to the next request, and
    every answer after it came one request late: neither meter was found. The simulated bus keeps
    the silence between the two answers (simulators.mbus_bus.collide_chars)."""
    from datetime import UTC, datetime, timedelta

    from simulators.mbus_bus import MBusBus
    from simulators.mbus_slave import MAX_TURNAROUND_BITS, MIN_TURNAROUND_BITS, MBusWaterMeter
    from simulators.meter_model import MeterModel

    installed = datetime.now(UTC) - timedelta(days=2)
    meters = [
        MBusWaterMeter(MeterModel(f"H{n}", installed=installed, seed=n), 0, identification, turnaround_bits=bits)
        for n, (identification, bits) in enumerate(
            [("12340001", MIN_TURNAROUND_BITS), ("12340002", MAX_TURNAROUND_BITS)]
        )
    ]
    settings = LineSettings(baudrate=2400, parity="E")
    line = SerialLine(MBusBus(meters, settings=settings), settings).start()
    try:
        text = bus_config_text(
            "mqtt://127.0.0.1:1",
            tmp_path / "s.sqlite",
            {**mbus_bus("m", line.port, 2 * SEARCH_ANSWER_S), "baudrate": 2400},  # the standard's 188 ms, wider
            [],
            gateway_id="g",
        )
        bus = parse_config_text(text).buses[0]
        assert isinstance(bus, MBusBusConfig)
        transport = MBusTransport(bus)
        found = transport.search_blocking("123400")
        transport.line.close()
    finally:
        line.stop()
    assert sorted(f.identification for f in found) == ["12340001", "12340002"]


@dataclass
class PolledAfterSearch:
    """A meter polled, searched for an hour later, then polled again an hour after that."""

    found: list[FoundMBus]
    fresh_telegrams: int  # the meter's own count (its access number) over the second poll
    polled_m3: float  # the second poll's volume
    at_search_m3: float  # the meter's register at the search, and at the second poll
    at_poll_m3: float


def poll_search_poll(tmp_path: Path, addressing: str, read_spoilt: bool = False) -> PolledAfterSearch:
    """On the product's simulated meter, which honours FCB (EN 13757-2, FCB/FCV), reads its volume at
    the bus clock's time and answers in two telegrams (so a poll ends on FCB = 0, the next poll's
    first request is FCB = 1, as the search's read is). ``read_spoilt``: its answer to the search's
    read reaches the gateway with a wrong checksum (it took the read all the same)."""
    from datetime import UTC, datetime, timedelta

    from gateway.config import MeterConfig
    from simulators.mbus_bus import MBusBus
    from simulators.mbus_slave import MBusWaterMeter
    from simulators.meter_model import MeterModel
    from simulators.wire_faults import WireFault, WireFaultKind, WireFaultPlan

    start = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)  # the evening: water used each hour
    searched, polled = start + timedelta(hours=1), start + timedelta(hours=2)
    now = [start]
    model = MeterModel("HOUSE-9", installed=datetime(2026, 1, 1, tzinfo=UTC), seed=9, initial_m3=42.0)
    primary = 5 if addressing == "primary" else 0
    water = MBusWaterMeter(model, primary, "26009999")
    spoilt = WireFault(WireFaultKind.BAD_CHECKSUM, address=26009999, start=searched, end=polled)
    faults = WireFaultPlan([spoilt]) if read_spoilt else None
    settings = LineSettings(baudrate=9600, parity="E")
    line = SerialLine(MBusBus([water], settings=settings, faults=faults), settings, None, lambda: now[0]).start()
    meter = MeterConfig("HOUSE-9", primary, "mbus", secondary_address="26009999" if addressing == "secondary" else None)
    try:
        text = bus_config_text(
            "mqtt://127.0.0.1:1", tmp_path / "s.sqlite", mbus_bus("m", line.port, WIDE_ANSWER_S), [], gateway_id="g"
        )
        bus_config = parse_config_text(text).buses[0]
        assert isinstance(bus_config, MBusBusConfig)
        transport = MBusTransport(replace(bus_config, meters=(meter,)), clock=lambda: now[0])
        transport.read_blocking(meter)  # two telegrams: FCB 1, then 0; the next poll's is 1
        now[0] = searched
        found = transport.search_blocking("26009999")
        now[0] = polled
        fresh_before = water.access_no
        reading = transport.read_blocking(meter)
        transport.line.close()
    finally:
        line.stop()
    at_search, at_poll = round(model.volume_m3(searched), 3), round(model.volume_m3(polled), 3)
    assert at_poll != at_search, "the meter used no water between search and poll"
    return PolledAfterSearch(found, water.access_no - fresh_before, reading.volume_m3, at_search, at_poll)


@pytest.mark.parametrize("addressing", ["primary", "secondary"])
def test_a_meter_a_search_read_answers_its_next_poll_with_a_fresh_telegram(tmp_path: Path, addressing: str) -> None:
    """A secondary-address search reads each meter it finds with FCB = 1 (the gateway cannot know an
    unknown meter's link state). A configured meter the polls had left expecting FCB = 1 next (after
    a two-telegram read: FCB 1, then 0) took the search's read as new, then the next poll's FCB = 1
    as a repeat of it (EN 13757-2, FCB/FCV), and answered the poll with the search's telegram: its
    volume at the search, stamped with the poll's time an hour later. Now a meter a search read gets
    SND_NKE before its next poll."""
    run = poll_search_poll(tmp_path, addressing)
    assert [f.identification for f in run.found] == ["26009999"] and run.found[0].volume_m3 == run.at_search_m3
    assert run.fresh_telegrams == 2, "a telegram of the poll was the search's, sent again"
    assert run.polled_m3 == run.at_poll_m3, run


def test_a_meter_whose_answer_to_a_search_s_read_was_spoilt_answers_its_next_poll_fresh(tmp_path: Path) -> None:
    """The meter took the search's read, but its answer came with a wrong checksum: the gateway does
    not know which meter took it, and gives every meter SND_NKE before its next poll."""
    run = poll_search_poll(tmp_path, "primary", read_spoilt=True)
    assert run.found == []
    assert run.fresh_telegrams == 2, "a telegram of the poll was the search's, sent again"
    assert run.polled_m3 == run.at_poll_m3, run


def test_a_search_s_read_answered_with_the_meter_s_earlier_telegram_is_read_again(tmp_path: Path) -> None:
    """The search reads with FCB = 1 and cannot reset a meter first (an SND_NKE at FDh deselects it):
    a meter whose last request carried FCB = 1 (a one-telegram poll's, or an earlier search's) took it
    as a repeat (EN 13757-2, FCB/FCV) and sent that telegram again, and the scan said the meter's
    volume at that request as what it read. A telegram with the access number of the last one taken
    from that meter is now read again with FCB = 0, which the meter takes as new."""
    from datetime import UTC, datetime, timedelta

    from gateway.config import MeterConfig
    from simulators.mbus_bus import MBusBus
    from simulators.mbus_slave import MBusWaterMeter
    from simulators.meter_model import MeterModel

    now = [datetime(2026, 6, 1, 17, 0, tzinfo=UTC)]  # the evening: water used each hour
    model = MeterModel("HOUSE-9", installed=datetime(2026, 1, 1, tzinfo=UTC), seed=9, initial_m3=42.0)
    water = MBusWaterMeter(model, 5, "26009999", history_months=0)  # one telegram: a poll is FCB = 1 alone
    settings = LineSettings(baudrate=9600, parity="E")
    line = SerialLine(MBusBus([water], settings=settings), settings, None, lambda: now[0]).start()
    meter = MeterConfig("HOUSE-9", 5, "mbus")
    volumes: list[tuple[float | None, float]] = []  # what each search said, the register then
    try:
        text = bus_config_text(
            "mqtt://127.0.0.1:1", tmp_path / "s.sqlite", mbus_bus("m", line.port, WIDE_ANSWER_S), [], gateway_id="g"
        )
        bus_config = parse_config_text(text).buses[0]
        assert isinstance(bus_config, MBusBusConfig)
        transport = MBusTransport(replace(bus_config, meters=(meter,)), clock=lambda: now[0])
        transport.read_blocking(meter)
        for _ in range(2):  # after the poll, then after the search
            now[0] += timedelta(hours=1)
            (found,) = transport.search_blocking("26009999")
            volumes.append((found.volume_m3, round(model.volume_m3(now[0]), 3)))
        transport.line.close()
    finally:
        line.stop()
    assert len({register for _, register in volumes} | {round(model.volume_m3(now[0] - timedelta(hours=2)), 3)}) == 3
    assert [said for said, _ in volumes] == [register for _, register in volumes]
