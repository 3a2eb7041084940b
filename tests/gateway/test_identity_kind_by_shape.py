"""A remembered identity an earlier version kept without its kind (gateway.meter_identity.kind_of)
is judged by its shape where the shape proves it: an M-Bus identification is 8 hex digits as its
telegram carries them, a Modbus serial number an unsigned integer's decimal digits without a leading
0. A meter id moved to the other protocol with such a row is read, the row set aside as one of the
other kind is; a row either could be (8 decimal digits, the first not 0) is compared as before.

Before, every kind-less row was compared: a meter id moved with one was refused at every poll until
its identity was configured, though no answer of the new protocol could ever match it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.mbus.header import identification_from_bytes
from firmware_protocols.modbus import load_profile
from gateway.config import MeterConfig, ModbusRtuBusConfig
from gateway.mbus_identity import IdentificationMismatch, check_identification, expected_identification
from gateway.meter_identity import IDENTIFICATION, SERIAL_NUMBER, FirstAnswer, MeterIdentities, kind_of
from gateway.modbus_identity import SerialNumberMismatch, check_serial_number, expected_serial_number
from gateway.spool import Spool

NOW = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
EARLIER = "2026-12-07T12:00:00Z"
PROFILE = load_profile("smart_water_meter")
SERIAL = PROFILE.serial_field
assert SERIAL is not None


def _earlier_row(value: str) -> FirstAnswer:
    return FirstAnswer(value, NOW)


@given(st.binary(min_size=4, max_size=4))
def test_no_m_bus_identification_is_judged_a_serial_number(identification: bytes) -> None:
    """Every identification a telegram can carry (any 4 bytes, BCD or not), kept without its kind,
    is an identification or undecided, never a serial number."""
    assert kind_of(_earlier_row(identification_from_bytes(identification))) in (IDENTIFICATION, None)


@given(st.integers(0, 2**32 - 1))
def test_no_modbus_serial_number_is_judged_an_identification(value: int) -> None:
    """Every serial number a profile's register decodes to (here smart_water_meter's u32), and the
    "0" an earlier version remembered for one never set, kept without its kind, is a serial number or
    undecided, never an identification."""
    registers = PROFILE.encode({"volume_m3": 1, "serial_number": str(value)})
    decoded = PROFILE.decode_registers(registers)["serial_number"]
    assert kind_of(_earlier_row("0" if decoded is None else decoded)) in (SERIAL_NUMBER, None)


def test_a_row_kept_with_its_kind_is_that_kind_and_one_either_could_be_is_undecided() -> None:
    assert kind_of(FirstAnswer("01234567", NOW, SERIAL_NUMBER)) == SERIAL_NUMBER
    assert kind_of(_earlier_row("40000005")) is None  # (8 digits: an identification, or a u32's serial number)


def _rtu_bus(*meters: MeterConfig) -> ModbusRtuBusConfig:
    return ModbusRtuBusConfig("rtu-1", "/dev/ttyUSB3", meters)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.meter_identity"]


def test_a_meter_moved_from_m_bus_with_an_earlier_version_s_row_is_read_on_modbus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """FLAT-5 was read on an M-Bus line by an earlier version (01234567 kept without its kind), and is
    now a Modbus meter: 01234567 can be no serial number (a leading 0), so it is set aside, said once,
    and the Modbus meter's first serial number taken, remembered with its kind, and checked from then
    on. Before: "the meter with serial number 40000005 answered, not 01234567", at every poll."""
    spool = Spool(tmp_path / "s.sqlite")
    try:
        spool.save_identity("FLAT-5", "01234567", EARLIER)
        identities = MeterIdentities(spool)
        meter = MeterConfig("FLAT-5", 5)
        bus = _rtu_bus(meter)
        with caplog.at_level(logging.WARNING):
            check_serial_number(identities, meter, {"serial_number": "40000005"}, NOW, bus, PROFILE)
            check_serial_number(identities, meter, {"serial_number": "40000005"}, NOW, bus, PROFILE)
        assert spool.load_identity("FLAT-5") == ("40000005", "2026-12-07T23:00:00Z", SERIAL_NUMBER)
        assert _said(caplog) == [
            "FLAT-5: its remembered M-Bus identification 01234567 (its first answer's, at 2026-12-07T12:00:00Z) "
            "is set aside: the meter is now read by Modbus, whose serial number cannot be compared with it; its "
            "serial number is checked from now on (its configured one, else its first Modbus answer's, "
            "remembered then)"
        ]
        with pytest.raises(SerialNumberMismatch, match="serial number 40000099 answered, not 40000005"):
            check_serial_number(identities, meter, {"serial_number": "40000099"}, NOW, bus, PROFILE)
    finally:
        spool.close()


def test_a_meter_moved_from_modbus_with_an_earlier_version_s_row_is_read_on_m_bus(tmp_path: Path) -> None:
    """FLAT-6 was a Modbus meter (1234567890 kept without its kind, 10 digits: no identification), now
    on an M-Bus primary address: its first identification is taken, and checked from then on; FLAT-7's
    "0" (a serial number never set, kept by an earlier version) likewise. Before, both refused."""
    spool = Spool(tmp_path / "s.sqlite")
    try:
        spool.save_identity("FLAT-6", "1234567890", EARLIER)
        spool.save_identity("FLAT-7", "0", EARLIER)
        identities = MeterIdentities(spool)
        six, seven = MeterConfig("FLAT-6", 6, "mbus"), MeterConfig("FLAT-7", 7, "mbus")
        check_identification(identities, six, {"id": "22222222"}, NOW, [six, seven])
        check_identification(identities, seven, {"id": "33333333"}, NOW, [six, seven])
        assert [expected_identification(identities, m) for m in (six, seven)] == ["22222222", "33333333"]
        assert spool.load_identity("FLAT-6") == ("22222222", "2026-12-07T23:00:00Z", IDENTIFICATION)
        with pytest.raises(IdentificationMismatch, match="identification 44444444 answered, not 22222222"):
            check_identification(identities, six, {"id": "44444444"}, NOW + timedelta(hours=1), [six, seven])
    finally:
        spool.close()


def test_a_row_either_kind_could_be_is_compared_as_before(tmp_path: Path) -> None:
    """11111111, kept without its kind, may be an M-Bus identification or a Modbus serial number (this
    meter's own, remembered before the kinds were kept): a Modbus answer with another is refused as
    before (the meter configured with its serial number is read), one with it is taken and given its
    kind. A guard: the old code did the same."""
    spool = Spool(tmp_path / "s.sqlite")
    try:
        spool.save_identity("FLAT-5", "11111111", EARLIER)
        spool.save_identity("FLAT-6", "11111111", EARLIER)
        identities = MeterIdentities(spool)
        five, six = MeterConfig("FLAT-5", 5), MeterConfig("FLAT-6", 6)
        bus = _rtu_bus(five, six)
        with pytest.raises(SerialNumberMismatch, match="serial number 40000005 answered, not 11111111"):
            check_serial_number(identities, five, {"serial_number": "40000005"}, NOW, bus, PROFILE)
        check_serial_number(identities, six, {"serial_number": "11111111"}, NOW, bus, PROFILE)
        assert spool.load_identity("FLAT-5") == ("11111111", EARLIER, None)
        assert spool.load_identity("FLAT-6") == ("11111111", EARLIER, SERIAL_NUMBER)
        assert expected_serial_number(identities, five) == "11111111"
    finally:
        spool.close()
