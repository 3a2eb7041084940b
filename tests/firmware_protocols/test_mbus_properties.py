"""Properties (hypothesis): build then parse gives the same value; parse then build the same bytes.

Also: the fast path agrees with the Construct reference path on every frame the strategies make,
which walks every VIF table through both.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import struct
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import (
    RecordSpec,
    build_req_ud2,
    build_rsp_ud,
    build_snd_nke,
    build_snd_ud_select,
    decode_frame,
    decode_master_frame,
    encode_record,
    secondary_address_matches,
)
from firmware_protocols.mbus.build import RecordInput, build_record, build_user_data
from firmware_protocols.mbus.codings import bcd_decode, bcd_encode
from firmware_protocols.mbus.frame import decode_frame_reference
from firmware_protocols.mbus.header import (
    MEDIUM,
    code_to_manufacturer,
    identification_from_bytes,
    identification_to_bytes,
    manufacturer_from_bytes,
    manufacturer_to_bytes,
    manufacturer_to_code,
    medium_code,
)
from firmware_protocols.mbus.record import DataRecordBlock
from firmware_protocols.mbus.records import decode_records, decode_records_reference
from firmware_protocols.mbus.vif_tables import lookup
from firmware_protocols.records import DataRecord

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
identifications = st.text(alphabet="0123456789", min_size=8, max_size=8)
media = st.sampled_from(sorted(MEDIUM.values()))
functions = st.sampled_from(["instantaneous", "maximum", "minimum", "error"])

# --- Header helpers ------------------------------------------------------------------------------


@given(letters)
def test_manufacturer_round_trip(code: str) -> None:
    assert code_to_manufacturer(manufacturer_to_code(code)) == code
    assert manufacturer_from_bytes(manufacturer_to_bytes(code)) == code


def test_manufacturer_example() -> None:
    # EN 13757-3 clause 5.6 example: "ELS" = 5*1024 + 12*32 + 19 = 0x1593
    assert manufacturer_to_code("ELS") == 0x1593
    assert manufacturer_to_bytes("ELS") == b"\x93\x15"


@given(identifications)
def test_identification_round_trip(identification: str) -> None:
    data = identification_to_bytes(identification)
    assert data == bytes.fromhex(identification)[::-1]
    assert identification_from_bytes(data) == identification


@given(st.integers(0, 255))
def test_medium_table_is_a_bijection(code: int) -> None:
    assert medium_code(MEDIUM[code]) == code


# --- Data field codings --------------------------------------------------------------------------


@given(
    st.integers(1, 6).flatmap(
        lambda size: st.tuples(st.just(size), st.integers(-(10 ** (2 * size - 1)) + 1, 10 ** (2 * size) - 1))
    )
)
def test_bcd_round_trip(case: tuple[int, int]) -> None:
    size, value = case
    data = bcd_encode(value, size)
    assert len(data) == size
    assert bcd_decode(data) == value


# --- DataRecord -> bytes -> DataRecord -------------------------------------------------------------

_INT_CODINGS = {"int8": 8, "int16": 16, "int24": 24, "int32": 32, "int48": 48, "int64": 64}
_BCD_CODINGS = {"bcd2": 2, "bcd4": 4, "bcd6": 6, "bcd8": 8, "bcd12": 12}
#: quantity, unit, the decimal exponents the VIF tables offer for it
_QUANTITIES = [
    ("volume", "m3", range(-6, 3)),
    ("energy", "Wh", range(-3, 7)),
    ("power", "W", range(-3, 7)),
    ("flow", "m3/h", range(-6, 2)),
    ("mass", "kg", range(-3, 7)),
    ("flow_temperature", "degC", range(-3, 1)),
    ("return_temperature", "degC", range(-3, 1)),
    ("temperature_difference", "K", range(-3, 1)),
    ("external_temperature", "degC", range(-3, 1)),
    ("pressure", "bar", range(-3, 1)),
    ("voltage", "V", range(-9, 7)),
    ("current", "A", range(-12, 4)),
]


@st.composite
def numeric_records(draw: Any) -> tuple[DataRecord, str]:
    quantity, unit, exponents = draw(st.sampled_from(_QUANTITIES))
    coding = draw(st.sampled_from(sorted(_INT_CODINGS) + sorted(_BCD_CODINGS)))
    if coding in _INT_CODINGS:
        bits = _INT_CODINGS[coding]
        raw = draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    else:
        digits = _BCD_CODINGS[coding]
        raw = draw(st.integers(-(10 ** (digits - 1)) + 1, 10**digits - 1))
    exponent = draw(st.sampled_from(list(exponents)))
    if exponent < 0:
        # a float holds about 15 significant digits: past 2**53 the value is not one number any more
        raw = max(-(2**53), min(raw, 2**53))
    # the value as records.py asks: negative exponents by division (a float), others an integer
    value: int | float = raw / 10**-exponent if exponent < 0 else raw * 10**exponent
    # Table 15's qualifying VIFEs: a meter's backward register is volume with VIFE 3Ch
    qualifier = draw(st.sampled_from(["", "_backward", "_forward", "_uncorrected", "_at_base_conditions"]))
    record = DataRecord(
        quantity=quantity + qualifier,
        unit=unit,
        value=value,
        storage=draw(st.one_of(st.integers(0, 15), st.integers(0, (1 << 41) - 1))),
        tariff=draw(st.one_of(st.integers(0, 3), st.integers(0, (1 << 20) - 1))),
        subunit=draw(st.one_of(st.integers(0, 1), st.integers(0, (1 << 10) - 1))),
        function=draw(functions),
    )
    return record, coding


@st.composite
def time_records(draw: Any) -> tuple[DataRecord, str]:
    date = draw(st.dates(datetime.date(1981, 1, 1), datetime.date(2080, 12, 31))).isoformat()
    if draw(st.booleans()):
        return DataRecord("date", None, date, storage=draw(st.integers(0, 31))), "int16"
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    value = f"{date}T{hour:02d}:{minute:02d}"
    return DataRecord("datetime", None, value, summer_time=draw(st.booleans())), "int32"  # SU bit too


@st.composite
def identity_records(draw: Any) -> tuple[DataRecord, str]:
    return DataRecord("fabrication_no", None, draw(st.integers(0, 99_999_999))), "bcd8"


any_record = st.one_of(numeric_records(), time_records(), identity_records())


def _specs(records: list[tuple[DataRecord, str]]) -> list[RecordSpec | DataRecord]:
    from firmware_protocols.mbus import encode_record

    return [encode_record(record, coding) for record, coding in records]


@FAST
@given(any_record)
def test_record_build_then_parse_gives_the_same_record(case: tuple[DataRecord, str]) -> None:
    record, _ = case
    data = build_user_data(_specs([case]))
    for decoded in (decode_records(data), decode_records_reference(data), decode_records(data)):
        assert decoded == ([record], None, False)
        assert type(decoded[0][0].value) is type(record.value)


@given(st.sampled_from([DataRecord("date", None, "2026-10-25"), DataRecord("volume", "m3", 1.5)]), st.booleans())
def test_summer_time_on_a_record_with_no_su_bit_is_refused(record: DataRecord, summer_time: bool) -> None:
    """Only type F has the bit: a date (type G) or a number built with it would decode without it."""
    with pytest.raises(DecodeError, match="only a datetime"):
        encode_record(dataclasses.replace(record, summer_time=summer_time))


@FAST
@given(
    address=st.integers(0, 250),
    identification=identifications,
    manufacturer=letters,
    version=st.integers(0, 255),
    medium=media,
    access_no=st.integers(0, 255),
    status=st.integers(0, 255),
    signature=st.integers(0, 0xFFFF),
    records=st.lists(any_record, max_size=8),
    manufacturer_data=st.one_of(st.none(), st.binary(max_size=20)),
    more=st.booleans(),
)
def test_rsp_ud_build_then_parse(
    address: int,
    identification: str,
    manufacturer: str,
    version: int,
    medium: str,
    access_no: int,
    status: int,
    signature: int,
    records: list[tuple[DataRecord, str]],
    manufacturer_data: bytes | None,
    more: bool,
) -> None:
    inputs: list[RecordInput] = list(records)  # (DataRecord, coding) pairs, as simulators give them
    frame = build_rsp_ud(
        address,
        identification,
        manufacturer,
        version,
        medium,
        access_no,
        status,
        inputs,
        signature=signature,
        manufacturer_data=manufacturer_data,
        more_records_follow=more,
    )
    decoded = decode_frame(frame)
    assert decoded == decode_frame_reference(frame)
    expected_manufacturer_data = None
    if manufacturer_data is not None or more:
        expected_manufacturer_data = (manufacturer_data or b"").hex()
    assert decoded == {
        "frame_type": "long",
        "c_field": 0x08,
        "function": "RSP_UD",
        "a_field": address,
        "ci_field": 0x72,
        "id": identification,
        "manufacturer": manufacturer,
        "version": version,
        "medium": medium,
        "access_no": access_no,
        "status": status,
        "signature": signature,
        "records": [record.to_json() for record, _ in records],
        "manufacturer_data": expected_manufacturer_data,
        "more_records_follow": more,
    }


# --- Units converted to the spec's (J, J/h, GJ, Mcal, °F) ---------------------------------------------

#: (VIF, extension code or None, exponent of code 0 of its group, codes in the group, unit, SI value of
#: one unit): 10^n J (Table 10), 10^(n-1) GJ and Mcal, 10^(n-3) °F (Table 12).
_WH_PER_CAL = Fraction(41868, 10000 * 3600)  # 1 cal = 4.1868 J (International Table calorie)
_CONVERTED = [
    (0x08, None, 0, 8, "energy", "Wh", Fraction(1, 3600), 0),  # J
    (0x30, None, 0, 8, "power", "W", Fraction(1, 3600), 0),  # J/h
    (0x7B, 0x08, 8, 2, "energy", "Wh", Fraction(1, 3600), 0),  # 0.1 GJ, 1 GJ
    (0x7B, 0x30, 8, 2, "power", "W", Fraction(1, 3600), 0),  # 0.1 GJ/h, 1 GJ/h
    (0x7B, 0x0C, 5, 4, "energy", "Wh", _WH_PER_CAL, 0),  # 10^(n-1) Mcal = 10^(n+5) cal
    (0x7B, 0x58, -3, 4, "flow_temperature", "degC", Fraction(5, 9), Fraction(-32 * 5, 9)),  # °F
    (0x7B, 0x5C, -3, 4, "return_temperature", "degC", Fraction(5, 9), Fraction(-32 * 5, 9)),
    (0x7B, 0x64, -3, 4, "external_temperature", "degC", Fraction(5, 9), Fraction(-32 * 5, 9)),
    (0x7B, 0x70, -3, 4, "temperature_limit", "degC", Fraction(5, 9), Fraction(-32 * 5, 9)),
    (0x7B, 0x60, -3, 4, "temperature_difference", "K", Fraction(5, 9), 0),  # °F difference
]


@st.composite
def converted_records(draw: Any, corrections: bool = True) -> tuple[bytes, DataRecord, float, str]:
    """A record in J, J/h, GJ, Mcal or °F: its bytes, the record it means, the value worked out in
    floats the plain way (``raw * 10**n / 3600``...), and the coding."""
    vif, extension, first, count, quantity, unit, per_unit, offset = draw(st.sampled_from(_CONVERTED))
    n = draw(st.integers(0, count - 1))
    coding = draw(st.sampled_from(sorted(_INT_CODINGS) + sorted(_BCD_CODINGS)))
    if coding in _INT_CODINGS:
        bits = _INT_CODINGS[coding]
        raw = draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    else:
        digits = _BCD_CODINGS[coding]
        raw = draw(st.integers(-(10 ** (digits - 1)) + 1, 10**digits - 1))
    # VIFE 0111 0nnn, x 10^(nnn-6) (the builder does not use it: its exponents are the tables')
    correction = draw(st.one_of(st.none(), st.integers(0, 7))) if corrections else None
    exponent = first + n + (correction - 6 if correction is not None else 0)
    vifes = () if extension is None else (extension + n,)
    if correction is not None:
        vifes += (0x70 + correction,)
    data = build_record(RecordSpec(coding, vif + n if extension is None else vif, raw, vifes))
    exact = Fraction(raw) * Fraction(10) ** exponent * per_unit + offset  # float(): correctly rounded
    in_unit = raw * 10**exponent if exponent >= 0 else raw / 10**-exponent
    naive = in_unit / 3600 if per_unit.denominator % 3600 == 0 and offset == 0 else None
    if per_unit == _WH_PER_CAL:
        naive = in_unit * 4.1868 / 3600
    elif per_unit == Fraction(5, 9):
        naive = (in_unit - 32) * 5 / 9 if offset else in_unit * 5 / 9
    assert naive is not None
    # Mcal to Wh is 1163 Wh per Mcal: whole numbers stay integers, as with the Wh VIFs
    value = int(exact) if per_unit == _WH_PER_CAL and exponent >= 6 else float(exact)
    return data, DataRecord(quantity, unit, value), naive, coding


@FAST
@given(converted_records())
def test_converted_record_parses_to_the_spec_unit(case: tuple[bytes, DataRecord, float, str]) -> None:
    data, record, naive, _ = case
    for decode in (decode_records_reference, decode_records, decode_records):
        (decoded,), _, _ = decode(data)
        # the exact value rounded once to a float (the record's value is float(Fraction(...)));
        # Mcal is 1163 Wh: an integer when the exponent leaves one
        assert decoded == record
        assert type(decoded.value) is type(record.value)
        # and raw * 10^n / 3600 (or (F - 32) * 5/9...) worked out in floats, within their rounding
        assert isinstance(decoded.value, int | float)
        assert math.isclose(decoded.value, naive, rel_tol=1e-12, abs_tol=1e-12 * (abs(naive) + 32))


@FAST
@given(converted_records(corrections=False))
def test_converted_record_parse_then_build_then_parse(case: tuple[bytes, DataRecord, float, str]) -> None:
    _, record, _, coding = case
    data = build_user_data([encode_record(record, coding)])
    for decoded in (decode_records(data), decode_records_reference(data)):
        assert decoded == ([record], None, False)
        assert type(decoded[0][0].value) is type(record.value)


@FAST
@given(numeric_records())
def test_values_in_the_spec_unit_keep_its_own_vifs(case: tuple[DataRecord, str]) -> None:
    record, coding = case
    spec = encode_record(record, coding)
    entry = lookup(spec.vif, spec.vifes[0] if spec.vifes else None)
    assert (entry.unit, entry.factor, entry.offset) == (record.unit, 1, 0)


def test_converted_encoding_examples() -> None:
    # 1 J: no Wh VIF holds 1/3600 Wh, so VIF 08h (10^0 J) with 1
    assert encode_record(DataRecord("energy", "Wh", 1 / 3600)) == RecordSpec("int32", 0x08, 1)
    # 10.0 Wh (36 kJ) is 100 * 10^-1 Wh (VIF 02h), the Wh VIF with the largest exponent for a float
    assert encode_record(DataRecord("energy", "Wh", 10.0)) == RecordSpec("int32", 0x02, 100)
    # -40 °F is -40 °C: the °C VIF; 0.1 °F (-17.72... °C) needs the °F VIF 10^-1 (FBh 5Ah)
    assert encode_record(DataRecord("flow_temperature", "degC", -40)).vif == 0x5B
    fahrenheit = DataRecord("flow_temperature", "degC", float((Fraction(1, 10) - 32) * Fraction(5, 9)))
    assert encode_record(fahrenheit) == RecordSpec("int32", 0x7B, 1, (0x5A,))
    # 116 300 Wh has no two-digit BCD in Wh, but is 100 Mcal (FBh 0Fh), 1163 Wh per Mcal
    mcal = DataRecord("energy", "Wh", 116_300)
    assert encode_record(mcal, "bcd2") == RecordSpec("bcd2", 0x7B, 1, (0x0F,))
    assert decode_records(build_user_data([(mcal, "bcd2")]))[0] == [mcal]


# --- Bytes -> container -> bytes, over every VIF -----------------------------------------------------


@st.composite
def data_fields(draw: Any) -> tuple[int, bytes]:
    """A data field coding and bytes with one encoding only (decimal BCD digits, finite reals)."""
    field = draw(st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE]))
    sizes = {0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x6: 6, 0x7: 8, 0x8: 0}
    if field in sizes:
        return field, draw(st.binary(min_size=sizes[field], max_size=sizes[field]))
    if field == 0x5:
        value = draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
        return field, struct.pack("<f", value)
    if field == 0xD:
        kind = draw(st.sampled_from(["text", "bcd", "binary"]))
        if kind == "text":
            text = draw(st.binary(max_size=20))
            return field, bytes((len(text),)) + text
        if kind == "binary":
            size = draw(st.sampled_from([*range(16), 16, 20, 24, 28, 32, 48, 64]))
            lvar = (
                0xE0 + size
                if size < 16
                else {16: 0xF0, 20: 0xF1, 24: 0xF2, 28: 0xF3, 32: 0xF4, 48: 0xF5, 64: 0xF6}[size]
            )
            return field, bytes((lvar,)) + draw(st.binary(min_size=size, max_size=size))
        digits = draw(st.integers(1, 9))
        value = draw(st.integers(0, 10 ** (2 * digits) - 1))
        # the builder picks the fewest bytes; so do we, for one encoding
        size = max(1, (len(str(value)) + 1) // 2)
        return field, bytes((0xC0 + size,)) + bcd_encode(value, size)
    size = {0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6}[field]
    value = draw(st.integers(0, 10 ** (2 * size) - 1))
    return field, bcd_encode(value, size)


@st.composite
def record_bytes(draw: Any) -> bytes:
    field, data = draw(data_fields())
    function = draw(st.integers(0, 3))
    difes = draw(st.lists(st.integers(0, 0x7F), max_size=10))
    dif = (0x80 if difes else 0) | (draw(st.integers(0, 1)) << 6) | (function << 4) | field
    dib = bytes([dif] + [d | (0x80 if i < len(difes) - 1 else 0) for i, d in enumerate(difes)])
    vif = draw(st.integers(0, 0x7F).filter(lambda v: v not in (0x7C, 0x7B, 0x7D)))
    extension = draw(st.sampled_from([None, 0x7B, 0x7D, 0x7C]))
    vifes = draw(st.lists(st.integers(0, 0x7F), max_size=9))
    text = b""
    if extension in (0x7B, 0x7D):
        vif, vifes = extension, [draw(st.integers(0, 0x7F)), *vifes]
    elif extension == 0x7C:
        vif = 0x7C
        raw_text = draw(st.binary(max_size=8))
        text = bytes((len(raw_text),)) + raw_text
    vib = bytes([vif | (0x80 if vifes else 0)]) + text
    vib += bytes(v | (0x80 if i < len(vifes) - 1 else 0) for i, v in enumerate(vifes))
    return dib + vib + data


@settings(max_examples=300, deadline=None)
@given(record_bytes())
def test_record_parse_then_build_gives_the_same_bytes(data: bytes) -> None:
    parsed = DataRecordBlock.parse(data)
    assert DataRecordBlock.build(parsed) == data


@FAST
@given(st.lists(record_bytes(), min_size=1, max_size=6), st.sampled_from([b"", b"\x2f\x2f", b"\x0f\x01\x02"]))
def test_fast_path_agrees_with_reference_on_any_layout(records: list[bytes], tail: bytes) -> None:
    body = b"".join(records) + tail
    header = bytes.fromhex("78563412931507070A000000")
    frame = bytes((0x68, len(body) + 15, len(body) + 15, 0x68, 0x08, 0x01, 0x72)) + header + body
    frame += bytes((sum(frame[4:]) & 0xFF, 0x16))
    if len(body) + 15 > 255:
        return
    reference = decode_frame_reference(frame)
    assert decode_frame(frame) == reference
    assert decode_frame(frame) == reference  # through the cached plan
    assert reference["records"] and len(reference["records"]) == len(records)


# --- Link layer and master frames -----------------------------------------------------------------


@given(st.integers(0, 255), st.booleans())
def test_snd_nke_and_req_ud2(address: int, fcb: bool) -> None:
    nke = build_snd_nke(address)
    assert nke == bytes((0x10, 0x40, address, (0x40 + address) & 0xFF, 0x16))
    assert decode_master_frame(nke) == {
        "frame_type": "short",
        "c_field": 0x40,
        "function": "SND_NKE",
        "a_field": address,
        "fcb": False,
        "fcv": False,
    }
    req = build_req_ud2(address, fcb)
    c_field = 0x7B if fcb else 0x5B
    assert req == bytes((0x10, c_field, address, (c_field + address) & 0xFF, 0x16))
    assert decode_frame(req)["function"] == "REQ_UD2"
    assert decode_frame(req)["fcb"] is fcb


@st.composite
def selections(draw: Any) -> dict[str, Any]:
    digits = draw(st.text(alphabet="0123456789F", min_size=8, max_size=8))
    return {
        "identification": digits,
        "manufacturer": draw(st.one_of(st.none(), letters)),
        "version": draw(st.one_of(st.none(), st.integers(0, 254))),
        "medium": draw(st.one_of(st.none(), media.filter(lambda m: m != "reserved_ff"))),
    }


@given(selections(), identifications, letters, st.integers(0, 254), media)
def test_select_build_then_parse_and_match(
    selection: dict[str, Any], identification: str, manufacturer: str, version: int, medium: str
) -> None:
    frame = build_snd_ud_select(**selection)
    decoded = decode_master_frame(frame)
    assert decoded["function"] == "SND_UD" and decoded["a_field"] == 0xFD and decoded["ci_field"] == 0x52
    assert decoded["secondary_address"] == selection
    expected = (
        all(p in ("F", c) for p, c in zip(selection["identification"], identification, strict=True))
        and selection["manufacturer"] in (None, manufacturer)
        and selection["version"] in (None, version)
        and selection["medium"] in (None, medium)
    )
    assert (
        secondary_address_matches(decoded["secondary_address"], identification, manufacturer, version, medium)
        is expected
    )


def test_select_all_wildcards_bytes() -> None:
    # EN 13757-3 Annex E: the all-wildcard selection, 68 0B 0B 68 53 FD 52 FF FF FF FF FF FF FF FF CS 16
    frame = build_snd_ud_select()
    body = bytes.fromhex("53FD52") + b"\xff" * 8
    assert frame == bytes.fromhex("680B0B68") + body + bytes((sum(body) & 0xFF, 0x16))


def test_record_spec_explicit_bytes() -> None:
    # DIF 0Ch (8-digit BCD), VIF 13h (volume, litres): 12345678 l; DIFE for storage 2, tariff 1
    spec = RecordSpec("bcd8", 0x13, 12345678, storage=2, tariff=1)
    assert build_record(spec) == bytes.fromhex("8C1113" + "78563412")
    assert decode_records(build_record(spec))[0] == [
        DataRecord("volume", "m3", 12345.678, storage=2, tariff=1),
    ]


def test_a_converted_value_at_the_end_of_the_coding_s_range_builds_back() -> None:
    """An int64 in °F (VIF FBh 5Bh) 544 above the lowest int64, as °C: no float holds the exact
    value, and the integer nearest to the float's own preimage lies below the int64 range. The raw
    number is the one nearest it within the range that still decodes to the same float (found by
    hypothesis: the builder had said no VIF encodes it)."""
    data = bytes.fromhex("07fb5b2002000000000080")
    ([record], _, _) = decode_records(data)
    assert isinstance(record.value, float) and record.value < -5e18
    rebuilt = build_user_data([encode_record(record, "int64")])
    assert decode_records(rebuilt) == ([record], None, False)
