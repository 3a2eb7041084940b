"""The VIF tables, data field codings and date/time types against the standard's own definitions.

Each case is a record written out by hand from EN 13757-3's tables, with the value the table implies.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus.fixed import decode_fixed
from firmware_protocols.mbus.records import decode_records, decode_records_reference
from firmware_protocols.mbus.timetypes import (
    TypeF,
    TypeG,
    TypeI,
    TypeJ,
    date_g,
    datetime_f,
    datetime_i,
    format_date,
    format_datetime,
    format_datetime_seconds,
    format_summer_time,
    format_time,
    summer_time_f,
    summer_time_i,
    time_j,
)
from firmware_protocols.records import DataRecord

# (record bytes as hex, quantity, unit, value, function, storage, tariff, subunit[, summer_time])
CASES: list[tuple[Any, ...]] = [
    # Table 10, primary VIF
    ("0413 4E61BC00", "volume", "m3", 12345.678, "instantaneous", 0, 0, 0),  # 10^-3 m3, int32
    ("0C13 78563412", "volume", "m3", 12345.678, "instantaneous", 0, 0, 0),  # same as BCD
    ("0C14 78563412", "volume", "m3", 123456.78, "instantaneous", 0, 0, 0),
    ("0416 0A000000", "volume", "m3", 10, "instantaneous", 0, 0, 0),  # 10^0 m3: an integer
    ("0403 E8030000", "energy", "Wh", 1000, "instantaneous", 0, 0, 0),
    ("0406 01000000", "energy", "Wh", 1000, "instantaneous", 0, 0, 0),  # kWh
    ("040E 05000000", "energy", "Wh", 1388.888888888889, "instantaneous", 0, 0, 0),  # 5 MJ / 3600
    ("040B 24000000", "energy", "Wh", 10.0, "instantaneous", 0, 0, 0),  # 36 kJ: exactly 10 Wh, a float
    ("0408 01000000", "energy", "Wh", 0.0002777777777777778, "instantaneous", 0, 0, 0),  # 1 J
    ("0433 10000000", "power", "W", 4.444444444444445, "instantaneous", 0, 0, 0),  # 16 kJ/h
    ("0436 B4000000", "power", "W", 50000.0, "instantaneous", 0, 0, 0),  # 180 MJ/h
    ("023B 2C01", "flow", "m3/h", 0.3, "instantaneous", 0, 0, 0),  # 10^-3 m3/h
    ("0243 0500", "flow", "m3/h", 0.03, "instantaneous", 0, 0, 0),  # 10^-4 m3/min * 60
    ("024F 0100", "flow", "m3/h", 36.0, "instantaneous", 0, 0, 0),  # 10^-2 m3/s * 3600
    ("0259 D204", "flow_temperature", "degC", 12.34, "instantaneous", 0, 0, 0),
    ("025D 1F00", "return_temperature", "degC", 0.31, "instantaneous", 0, 0, 0),
    ("0261 2C01", "temperature_difference", "K", 3.0, "instantaneous", 0, 0, 0),
    ("0267 1500", "external_temperature", "degC", 21, "instantaneous", 0, 0, 0),
    ("026A 0A00", "pressure", "bar", 1.0, "instantaneous", 0, 0, 0),
    ("0222 0200", "on_time", "s", 7200, "instantaneous", 0, 0, 0),  # hours
    ("0227 0300", "operating_time", "s", 259200, "instantaneous", 0, 0, 0),  # days
    ("0272 0100", "averaging_duration", "s", 3600, "instantaneous", 0, 0, 0),
    ("0C78 78563412", "fabrication_no", None, 12345678, "instantaneous", 0, 0, 0),
    # DIF function field and DIF/DIFE storage, tariff, subunit (Tables 4 and 8)
    ("1413 01000000", "volume", "m3", 0.001, "maximum", 0, 0, 0),
    ("2413 01000000", "volume", "m3", 0.001, "minimum", 0, 0, 0),
    ("3413 01000000", "volume", "m3", 0.001, "error", 0, 0, 0),
    ("4413 01000000", "volume", "m3", 0.001, "instantaneous", 1, 0, 0),
    ("C4 0F 13 01000000", "volume", "m3", 0.001, "instantaneous", 31, 0, 0),
    ("84 F0 40 13 01000000", "volume", "m3", 0.001, "instantaneous", 0, 3, 3),
    ("84 80 40 13 01000000", "volume", "m3", 0.001, "instantaneous", 0, 0, 2),
    # Table 12 (FBh) and Table 14 (FDh)
    ("04FB01 02000000", "energy", "Wh", 2000000, "instantaneous", 0, 0, 0),  # 1 MWh
    ("04FB09 02000000", "energy", "Wh", 555555.5555555555, "instantaneous", 0, 0, 0),  # 2 GJ
    ("04FB08 09000000", "energy", "Wh", 250000.0, "instantaneous", 0, 0, 0),  # 0.9 GJ
    ("04FB31 24000000", "power", "W", 10000000.0, "instantaneous", 0, 0, 0),  # 36 GJ/h
    ("04FB0D 02000000", "energy", "Wh", 2326, "instantaneous", 0, 0, 0),  # 2 Mcal: 1 cal = 4.1868 J
    ("04FB0C 03000000", "energy", "Wh", 348.9, "instantaneous", 0, 0, 0),  # 0.3 Mcal
    ("04FB0F 01000000", "energy", "Wh", 116300, "instantaneous", 0, 0, 0),  # 100 Mcal
    ("02FB5B D400", "flow_temperature", "degC", 100.0, "instantaneous", 0, 0, 0),  # 212 °F
    ("02FB5E F401", "return_temperature", "degC", 10.0, "instantaneous", 0, 0, 0),  # 50.0 °F
    ("02FB67 D8FF", "external_temperature", "degC", -40.0, "instantaneous", 0, 0, 0),  # -40 °F
    ("02FB63 0900", "temperature_difference", "K", 5.0, "instantaneous", 0, 0, 0),  # 9 °F difference
    ("02FB60 0100", "temperature_difference", "K", 0.0005555555555555556, "instantaneous", 0, 0, 0),  # 0.001 °F
    ("02FB73 2000", "temperature_limit", "degC", 0.0, "instantaneous", 0, 0, 0),  # 32 °F
    ("02FB77 2000", "temperature_limit", "degC", 32, "instantaneous", 0, 0, 0),  # 32 °C
    ("02FB20 0A00", "volume", "m3", 0.28316846592, "instantaneous", 0, 0, 0),  # 10 ft3
    ("02FB1A 5802", "relative_humidity", "%", 60.0, "instantaneous", 0, 0, 0),
    ("02FD48 FE08", "voltage", "V", 230.2, "instantaneous", 0, 0, 0),  # 10^-1 V
    ("02FD59 4200", "current", "A", 0.066, "instantaneous", 0, 0, 0),  # 10^-3 A
    ("02FD17 0400", "error_flags", None, 4, "instantaneous", 0, 0, 0),
    ("0DFD11 03 434241", "customer", None, "ABC", "instantaneous", 0, 0, 0),  # LVAR text, reversed
    ("01FD0C 07", "model_version", None, 7, "instantaneous", 0, 0, 0),
    # Table 15, combinable VIFEs
    ("0493 3B 10000000", "volume_forward", "m3", 0.016, "instantaneous", 0, 0, 0),
    ("0493 3C 10000000", "volume_backward", "m3", 0.016, "instantaneous", 0, 0, 0),
    ("0496 73 10000000", "volume", "m3", 0.016, "instantaneous", 0, 0, 0),  # x10^-3 correction
    ("02AD 22 0200", "power_per_hour", "W/h", 200, "instantaneous", 0, 0, 0),
    ("0493 15 00000000", "volume_error_no_data_available", "m3", 0.0, "instantaneous", 0, 0, 0),
    # Table 16: E000 0000 "no error", the value is valid: still the volume (01h..1Fh mark it bad)
    ("0C93 00 45230100", "volume", "m3", 12.345, "instantaneous", 0, 0, 0),
    ("0C93 18 45230100", "volume_error_data_error", "m3", 12.345, "instantaneous", 0, 0, 0),
    ("02FC 03 485225 74 D411", "plain_text", "%RH", 45.64, "instantaneous", 0, 0, 0),
    ("02FF 01 0500", "manufacturer_specific_01", None, 5, "instantaneous", 0, 0, 0),
    ("02AC FF 02 0900", "power_manufacturer_02", "W", 90, "instantaneous", 0, 0, 0),
    # data field codings (Table 5, Annex A)
    ("0113 FF", "volume", "m3", -0.001, "instantaneous", 0, 0, 0),  # Type B is signed
    ("0313 FFFF7F", "volume", "m3", 8388.607, "instantaneous", 0, 0, 0),
    ("0613 010000000080", "volume", "m3", -140737488355.327, "instantaneous", 0, 0, 0),
    ("0716 0100000000000000", "volume", "m3", 1, "instantaneous", 0, 0, 0),
    ("0516 0000C03F", "volume", "m3", 1.5, "instantaneous", 0, 0, 0),  # Type H real
    ("0A16 34F1", "volume", "m3", -134, "instantaneous", 0, 0, 0),  # BCD, Fh sign nibble
    ("0E16 563412000000", "volume", "m3", 123456, "instantaneous", 0, 0, 0),
    ("0C16 FFFFFFFF", "volume", "m3", None, "instantaneous", 0, 0, 0),  # not BCD: no value
    ("0D16 C2 3412", "volume", "m3", 1234, "instantaneous", 0, 0, 0),  # LVAR BCD
    ("0D16 D1 12", "volume", "m3", -12, "instantaneous", 0, 0, 0),  # LVAR negative BCD
    # LVAR binary number (Table 6) of a numeric VIF: Type B, in the VIF's unit and exponent
    ("0D16 E2 3412", "volume", "m3", 0x1234, "instantaneous", 0, 0, 0),
    ("0D13 E4 39300000", "volume", "m3", 12.345, "instantaneous", 0, 0, 0),  # 12345 l
    ("0D13 E1 FF", "volume", "m3", -0.001, "instantaneous", 0, 0, 0),
    ("0D13 E0", "volume", "m3", None, "instantaneous", 0, 0, 0),  # no bytes: no number
    ("0DFD11 E2 3412", "customer", None, "1234", "instantaneous", 0, 0, 0),  # an identifier: hex
    ("0D13 F0 " + "01" * 15 + "80", "volume", "m3", "80" + "01" * 15, "instantaneous", 0, 0, 0),  # 16 bytes: hex
    ("0016", "volume", "m3", None, "instantaneous", 0, 0, 0),  # no data
    # identifiers, flags and counts are types C (unsigned) and D (bit array), not B
    ("017A FA", "bus_address", None, 250, "instantaneous", 0, 0, 0),  # Table 10: "data type C"
    ("02FD17 0080", "error_flags", None, 0x8000, "instantaneous", 0, 0, 0),  # Table 14 "(binary)": bit 15
    ("01FD1B 80", "digital_input", None, 0x80, "instantaneous", 0, 0, 0),
    ("03FD1A 0000F0", "digital_output", None, 0xF00000, "instantaneous", 0, 0, 0),
    ("06FD08 FFFFFFFFFFFF", "access_number", None, 2**48 - 1, "instantaneous", 0, 0, 0),
    ("01FD71 B5", "rf_level", "dBm", -75, "instantaneous", 0, 0, 0),  # a level: type B, below zero
    # date and time (Annex A types G, F, I, J)
    ("426C 9F1C", "date", None, "2012-12-31", "instantaneous", 1, 0, 0),
    ("046D 3B17 9F1C", "datetime", None, "2012-12-31T23:59", "instantaneous", 0, 0, 0, False),
    ("046D BB17 9F1C", "datetime", None, None, "instantaneous", 0, 0, 0),  # IV bit: invalid
    ("066D 1E3B17 9F1C 00", "datetime", None, "2012-12-31T23:59:30", "instantaneous", 0, 0, 0, False),
    # Table A.5, SU bit (byte 1, bit 7): the autumn change day's repeated hour, 01:30 in summer time
    # then 01:30 in standard time, an hour later; the text is the meter's wall time in both
    ("046D 1E81 593A", "datetime", None, "2026-10-25T01:30", "instantaneous", 0, 0, 0, True),
    ("046D 1E01 593A", "datetime", None, "2026-10-25T01:30", "instantaneous", 0, 0, 0, False),
    ("066D 1E7B17 9F1C 00", "datetime", None, "2012-12-31T23:59:30", "instantaneous", 0, 0, 0, True),  # A.7: bit 6
    ("036D 1E3B17", "time", None, "23:59:30", "instantaneous", 0, 0, 0),
    # Annex A wildcards (day 0, month 15, year 127, hour 31, minute/second 63: "every ...") and dates
    # the calendar does not have are no point in time: None, never an invented date
    ("426C FFFF", "date", None, None, "instantaneous", 1, 0, 0),  # every day, month, year: was 2027-15-31
    ("426C 0000", "date", None, None, "instantaneous", 1, 0, 0),  # month 0 (libmbus: 2000-00-00)
    ("426C E03C", "date", None, None, "instantaneous", 1, 0, 0),  # day 0 of December 2031: every day
    ("426C 9E12", "date", None, None, "instantaneous", 1, 0, 0),  # 30 February 2012
    ("426C 7D12", "date", None, None, "instantaneous", 1, 0, 0),  # 29 February 2011: no leap year
    ("426C 9D12", "date", None, "2012-02-29", "instantaneous", 1, 0, 0),  # 2012 is a leap year
    ("046D 0000 E1F1", "datetime", None, None, "instantaneous", 0, 0, 0),  # 1 January, every year
    ("046D 3F17 9F1C", "datetime", None, None, "instantaneous", 0, 0, 0),  # minute 63: every minute
    ("046D 3B1F 9F1C", "datetime", None, None, "instantaneous", 0, 0, 0),  # hour 31: every hour
    ("066D 3F3B17 9F1C 00", "datetime", None, None, "instantaneous", 0, 0, 0),  # second 63
    ("036D 1E3B1F", "time", None, None, "instantaneous", 0, 0, 0),  # hour 31
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_record_meaning(case: tuple) -> None:
    hex_bytes, quantity, unit, value, function, storage, tariff, subunit, *summer_time = case
    data = bytes.fromhex(hex_bytes.replace(" ", ""))
    expected = DataRecord(quantity, unit, value, storage, tariff, subunit, function, *summer_time)
    for decode in (decode_records_reference, decode_records, decode_records):
        records, manufacturer, more = decode(data)
        assert records == [expected]
        assert type(records[0].value) is type(value)
        assert (manufacturer, more) == (None, False)


@pytest.mark.parametrize(
    ("unit1", "unit2", "expected"),
    [
        # Annex G units: kJ and kJ/h become Wh and W (1 Wh = 3600 J), exactly when they can
        (0x0B, 0x1D, [("energy", "Wh", 10.0), ("power", "W", 1000.0)]),  # 36 kJ, 3600 kJ/h
        (0x11, 0x23, [("energy", "Wh", 10000000.0), ("power", "W", 1000000000.0)]),  # 36 GJ, 3600 GJ/h
        (0x0E, 0x20, [("energy", "Wh", 10000.0), ("power", "W", 1000000.0)]),  # 36 MJ, 3600 MJ/h
        (0x05, 0x14, [("energy", "Wh", 36000), ("power", "W", 3600)]),  # kWh, W: unchanged integers
    ],
)
def test_fixed_structure_units(unit1: int, unit2: int, expected: list[tuple[str, str, float]]) -> None:
    # ID 12345678, access 1, status 80h (binary counters), medium heat (04h), counters 36 and 3600
    medium = 0x04
    medium_unit = bytes((((medium & 3) << 6) | unit1, ((medium >> 2) << 6) | unit2))
    data = bytes.fromhex("78563412 01 80") + medium_unit + (36).to_bytes(4, "little") + (3600).to_bytes(4, "little")
    decoded = decode_fixed(data)
    assert decoded["medium"] == "heat"
    got = [(r["quantity"], r["unit"], r["value"]) for r in decoded["records"]]
    assert got == expected
    assert [type(value) for _, _, value in got] == [type(value) for _, _, value in expected]


def test_fillers_and_manufacturer_data_are_not_records() -> None:
    data = bytes.fromhex("2F2F 0413 01000000 2F 1F 0102")
    for decode in (decode_records_reference, decode_records):
        assert decode(data) == ([DataRecord("volume", "m3", 0.001)], "0102", True)
    assert decode_records(bytes.fromhex("0F"))[1:] == ("", False)


@pytest.mark.parametrize(
    "hex_bytes",
    ["04", "0413 0100", "84", "8413", "04FB", "0493", "02FC 05 4142", "0DFD11 F7", "0DFD11 05 4142", "3F13 00", "FF"],
)
def test_malformed_records_raise_decode_error(hex_bytes: str) -> None:
    data = bytes.fromhex(hex_bytes.replace(" ", ""))
    for decode in (decode_records_reference, decode_records):
        with pytest.raises(DecodeError):
            decode(data)


@given(st.binary(min_size=2, max_size=2))
def test_type_g_fast_equals_construct(data: bytes) -> None:
    assert date_g(data) == format_date(TypeG.parse(data))


@given(st.binary(min_size=4, max_size=4))
def test_type_f_fast_equals_construct(data: bytes) -> None:
    assert datetime_f(data) == format_datetime(TypeF.parse(data))
    assert summer_time_f(data) == format_summer_time(TypeF.parse(data))
    assert TypeF.build(TypeF.parse(data)) == data


@given(st.binary(min_size=6, max_size=6))
def test_type_i_fast_equals_construct(data: bytes) -> None:
    assert datetime_i(data) == format_datetime_seconds(TypeI.parse(data))
    assert summer_time_i(data) == format_summer_time(TypeI.parse(data))
    assert TypeI.build(TypeI.parse(data)) == data


@given(field=st.sampled_from([0x04, 0x06]), data=st.binary(min_size=6, max_size=6))
def test_a_date_and_time_record_carries_its_su_bit(field: int, data: bytes) -> None:
    """Types F and I: the SU bit (A.5: byte 1 bit 7; A.7: byte 1 bit 6) beside the wall time, the
    same on both paths; none when the IV bit marks the time invalid, or the fields name no point in
    time (a wildcard, a date the calendar does not have): no SU bit beside no value."""
    data = data[: 4 if field == 0x04 else 6]
    invalid = data[0] & 0x80 if field == 0x04 else data[1] & 0x80
    su = data[1] & (0x80 if field == 0x04 else 0x40)
    for decode in (decode_records_reference, decode_records, decode_records):
        ((record,), _, _) = decode(bytes((field, 0x6D)) + data)
        no_time = invalid or record.value is None
        assert record.summer_time == (None if no_time else bool(su))
        assert ("summer_time" in record.to_json()) == (not no_time)


@given(st.binary(min_size=3, max_size=3))
def test_type_j_fast_equals_construct(data: bytes) -> None:
    assert time_j(data) == format_time(TypeJ.parse(data))


# --- Table 15: combinable VIFEs that say the value is a date, a duration or a count ------------------

#: E011 1001 "start date(/time) of", E100 uf1b and E110 1f1b "date (/time) of" (begin/end,
#: first/last, lower/upper limit exceed): the data field holds a date (type G, 16 bits) or a date
#: and time (type F, 32 bits), not a value of the VIF's quantity.
_DATE_OF = [0x39, 0x42, 0x43, 0x46, 0x47, 0x4A, 0x4B, 0x4E, 0x4F, 0x6A, 0x6B, 0x6E, 0x6F]
#: E101 ufnn "duration of limit exceed" and E110 0fnn "duration of": nn = s, min, h, d.
_DURATION_OF = [*range(0x50, 0x60), *range(0x60, 0x68)]
#: E100 u001 "number of exceeds of lower/upper limit".
_COUNT_OF = [0x41, 0x49]
#: Numeric primary VIFs (Table 10): volume, flow, power, energy, temperatures, pressure.
_NUMERIC_VIFS = [*range(0x00, 0x20), *range(0x28, 0x6C)]


@given(
    vif=st.sampled_from(_NUMERIC_VIFS),
    vife=st.sampled_from(_DATE_OF),
    data=st.one_of(st.binary(min_size=2, max_size=2), st.binary(min_size=4, max_size=4)),
)
def test_date_of_vifes_make_the_record_a_date(vif: int, vife: int, data: bytes) -> None:
    field = {2: 0x02, 4: 0x04}[len(data)]
    record = bytes((field, vif | 0x80, vife)) + data
    expected = (date_g(data), None) if field == 0x02 else (datetime_f(data), summer_time_f(data))
    for decode in (decode_records_reference, decode_records, decode_records):
        ((decoded,), _, _) = decode(record)
        assert (decoded.unit, decoded.value, decoded.summer_time) == (None, *expected)


@given(vif=st.sampled_from(_NUMERIC_VIFS), vife=st.sampled_from(_DURATION_OF), raw=st.integers(0, 0x7FFF))
def test_duration_of_vifes_make_the_record_a_duration_in_seconds(vif: int, vife: int, raw: int) -> None:
    record = bytes((0x02, vif | 0x80, vife)) + raw.to_bytes(2, "little")
    for decode in (decode_records_reference, decode_records, decode_records):
        ((decoded,), _, _) = decode(record)
        assert (decoded.unit, decoded.value) == ("s", raw * (1, 60, 3600, 86400)[vife & 0x03])


@given(vif=st.sampled_from(_NUMERIC_VIFS), vife=st.sampled_from(_COUNT_OF), raw=st.integers(0, 0x7FFF))
def test_number_of_exceeds_is_a_count(vif: int, vife: int, raw: int) -> None:
    record = bytes((0x02, vif | 0x80, vife)) + raw.to_bytes(2, "little")
    for decode in (decode_records_reference, decode_records, decode_records):
        ((decoded,), _, _) = decode(record)
        assert (decoded.unit, decoded.value) == (None, raw)


def test_landis_gyr_maximum_flow_temperature_end_date() -> None:
    """landis+gyr_ultraheat_t230 record 21 (libmbus corpus): DIF 94 10 (maximum, tariff 1), VIF DAh
    (flow temperature 10^-1 °C), VIFE 6Fh (date/time of end of last), 32 14 7A 18: 2011-08-26 20:50,
    not 41065374.6 °C."""
    ((decoded,), _, _) = decode_records(bytes.fromhex("9410DA6F32147A18"))
    assert decoded == DataRecord(
        "flow_temperature_last_end",
        None,
        "2011-08-26T20:50",
        storage=0,
        tariff=1,
        function="maximum",
        summer_time=False,  # byte 1, 14h: SU bit 0
    )


#: The fixed data structure's own 4-bit medium (EN 1434-3:1997 6.4.2, kept by EN 13757-3 Annex G;
#: the same table as libmbus's mbus_data_fixed_medium): 0 to 8 as the device types of Table 12,
#: 9 and F reserved, A to E the mode 2 variants of gas, heat, hot water, water and H.C.A.
FIXED_MEDIA = {
    0x0: "other",
    0x1: "oil",
    0x2: "electricity",
    0x3: "gas",
    0x4: "heat",
    0x5: "steam",
    0x6: "warm_water",
    0x7: "water",
    0x8: "heat_cost_allocator",
    0x9: "reserved_fixed_09",
    0xA: "gas_mode_2",
    0xB: "heat_mode_2",
    0xC: "warm_water_mode_2",
    0xD: "water_mode_2",
    0xE: "heat_cost_allocator_mode_2",
    0xF: "reserved_fixed_0f",
}


@given(medium=st.integers(0, 15), unit1=st.integers(0, 0x3F), unit2=st.integers(0, 0x3F))
def test_fixed_structure_medium_is_its_own_table(medium: int, unit1: int, unit2: int) -> None:
    """A water meter in mode 2 (medium Dh) is a water meter, not "heat and cooling" (Table 12's Dh)."""
    medium_unit = bytes((((medium & 3) << 6) | unit1, ((medium >> 2) << 6) | unit2))
    data = bytes.fromhex("78563412 01 00") + medium_unit + bytes(8)
    assert decode_fixed(data)["medium"] == FIXED_MEDIA[medium]


@given(
    negative=st.booleans(),
    lead=st.sampled_from("0123456789F"),
    rest=st.integers(0, 8).flatmap(
        lambda size: st.text(alphabet="0123456789", min_size=2 * size + 1, max_size=2 * size + 1)
    ),
)
def test_lvar_bcd_sign_comes_from_the_lvar_alone(negative: bool, lead: str, rest: str) -> None:
    """EN 13757-3 Table 6: LVAR C0h+n is a positive, D0h+n a negative BCD number of 2n digits. The
    sign is the LVAR's; an Fh nibble is no digit (Type A's minus sign is for fixed BCD fields), so
    such a number has no value, as non-decimal BCD elsewhere, rather than the opposite sign."""
    digits = lead + rest
    size = len(digits) // 2
    lvar = (0xD0 if negative else 0xC0) + size
    record = bytes((0x0D, 0x16, lvar)) + bytes.fromhex(digits)[::-1]  # VIF 16h: m3, exponent 0
    expected = None if lead == "F" else (-int(digits) if negative else int(digits))
    for decode in (decode_records_reference, decode_records, decode_records):
        ((decoded,), _, _) = decode(record)
        assert decoded.value == expected


@given(
    vif=st.sampled_from([0x13, 0x16, 0x3B, 0x06, 0x0E, 0x5B]),  # volume, flow, energy (kWh, MJ), temperature
    size_field=st.sampled_from([(1, 0x01), (2, 0x02), (3, 0x03), (4, 0x04), (6, 0x06), (8, 0x07)]),
    data=st.binary(min_size=8, max_size=8),
)
def test_an_lvar_binary_number_reads_as_the_same_size_binary_field(
    vif: int, size_field: tuple[int, int], data: bytes
) -> None:
    """EN 13757-3 Table 6: LVAR E0h + n is a binary number of n bytes. In a numeric record it is the
    number Table 5's binary field of that size holds (Type B), scaled by the VIF (it was hex text, with
    the VIF's unit beside it and its exponent not applied: E4 39300000 in litres was '00003039' m3)."""
    size, field = size_field
    data = data[:size]
    for decode in (decode_records_reference, decode_records, decode_records):
        ((lvar,), _, _) = decode(bytes((0x0D, vif, 0xE0 + size)) + data)
        ((fixed,), _, _) = decode(bytes((field, vif)) + data)
        assert lvar == fixed
        assert type(lvar.value) is type(fixed.value)


@given(st.binary(min_size=2, max_size=2))
def test_a_type_g_date_is_a_real_date_or_none(data: bytes) -> None:
    """Annex A: whatever the two bytes, the value is a date the calendar has, with the bytes' day,
    month and year, or None (a wildcard, an out-of-range field): never a date that does not exist."""
    from datetime import date

    value = date_g(data)
    fields = TypeG.parse(data)
    year = (fields.year_high << 3) | fields.year_low
    if value is None:
        assert year > 99 or not 1 <= fields.month <= 12 or fields.day == 0 or fields.day > 28
    else:
        parsed = date.fromisoformat(value)
        assert (parsed.month, parsed.day, parsed.year % 100) == (fields.month, fields.day, year)


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("date", "2013-02-30"), ("date", "2013-13-01"), ("date", "2013-05-00"), ("datetime", "2013-02-30T10:00")],
)
def test_a_date_the_calendar_does_not_have_is_not_built(quantity: str, value: str) -> None:
    """It would decode as no date (None): the builder refuses it rather than send a value it loses."""
    from firmware_protocols.mbus.build import encode_record

    with pytest.raises(DecodeError):
        encode_record(DataRecord(quantity, None, value))
