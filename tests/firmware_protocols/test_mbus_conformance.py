"""Conformance with libmbus's corpus of real meters' frames (read in place from ../shared/conformance).

Every ``test-frames/*.hex`` is decoded, by the fast path and by the Construct reference path, and
compared with libmbus's ``*.norm.xml``: header, and each record's value, unit and storage number.
Where libmbus and EN 13757-3 disagree we follow the standard; each such frame is listed below with
the clause and exactly which records differ.
"""

from __future__ import annotations

import re

import pytest

from firmware_protocols.errors import DecodeError
from firmware_protocols.mbus import decode_frame
from firmware_protocols.mbus.frame import decode_frame_reference
from tests.firmware_protocols.test_mbus_corpus import (
    ERROR_FRAMES,
    TEST_FRAMES,
    UNSUPPORTED_FRAMES,
    compare,
    frame_names,
    read_expected,
    read_hex,
)

PER_PULSE = "EN 13757-3 Table 15, VIFE E010 100p: 'increment per input pulse'; the unit is m3 per pulse"
NOT_BCD = "EN 13757-3 Annex A, Type A: digits Ah-Eh are not decimal, so no value (libmbus sums nibbles)"
DATE_OF = (
    "EN 13757-3 Table 15, VIFE E110 1f1b 'date (/time) of' (6Fh: end of last): the data field is a "
    "type F date and time, not a value in the VIF's unit (libmbus scales it as one: 41065374.6 degC)"
)
DURATION_OF = (
    "EN 13757-3 Table 15, VIFE E101 ufnn 'duration of limit exceed', nn = 00: seconds, not the VIF's "
    "m3/h (the numbers agree, the unit does not)"
)
NO_DATE = (
    "EN 13757-3 Annex A, Type G: 0000h is month 0, no date (day 0 'every day' of no month); libmbus "
    "writes '2000-00-00'. A date the calendar does not have is no value: None"
)
EVERY_YEAR = "EN 13757-3 Annex A, Type F: year 127 is 'every year', a recurring date, no point in time: None"

#: frame -> (why we follow the standard, the record indexes where libmbus differs)
KNOWN_DIFFERENCES: dict[str, tuple[str, set[int]]] = {
    "EFE_Engelmann-Elster-SensoStar-2": (PER_PULSE, {24}),
    "EFE_Engelmann-WaterStar": (PER_PULSE, {11}),
    "engelmann_sensostar2c": (PER_PULSE, {13}),
    "ELS_Elster-F96-Plus": (NOT_BCD, {4, 5}),
    "abb_f95": (NOT_BCD, {2, 3}),
    "SEN_Pollustat": (DURATION_OF, {12, 13}),
    "landis+gyr_ultraheat_t230": (DATE_OF + "; record 32: " + EVERY_YEAR, {19, 20, 21, 22, 32}),
    "ACW_Itron-BM-plus-m": (NO_DATE, {2}),
    "itron_bm_+m": (NO_DATE, {2}),
    "siemens_water": (NO_DATE, {3}),
    "siemens_wfh21": (NO_DATE, {3}),
    "REL-Relay-Padpuls2": ("EN 13757-3 Annex A, Type F: the IV bit marks the date/time invalid: None", {1}),
    "manual_frame2": (
        "EN 13757-3 Annex G: unit code 3Eh is 'same unit as counter 1, historic value' (storage 1)",
        {1},
    ),
    "sontex_supercal_531_telegram1": (
        "records.py (the spec's normalised units): energy in Wh; VIF E000 1nnn (10^nnn J, EN 13757-3 "
        "Table 10) is converted, 1 Wh = 3600 J; libmbus keeps J (the values, 0, agree)",
        {0, 6},
    ),
    "sen_pollutherm": (
        "EN 13757-3 Table 10: VIF 7Bh without an extension VIFE names no quantity; we keep the "
        "record (reserved_7b, its BCD value); libmbus drops its content",
        {2},
    ),
}

#: error-frames/ that are valid frames per EN 13757-3: a slave's report of an application error
#: (CI = 70h, clause 5 Table 3). libmbus calls them errors; we decode the report.
APPLICATION_ERROR_REPORTS = {
    "application_busy": "application_busy",
    "buffer_too_long": "buffer_too_long",
    "error": "unspecified_error",  # a control frame: CI = 70h with no code is the unspecified error
    "premature_end_of_record": "premature_end_of_record",
    "too_many_difes": "too_many_difes",
    "too_many_readouts": "too_many_readouts",
    "too_many_records": "too_many_records",
    "too_many_vifes": "too_many_vifes",
    "unimplemented_ci": "unimplemented_ci",
    "unspecified_error": "unspecified_error",
}

#: unsupported-frames/: frames libmbus does not decode, and what the standard makes of them.
UNSUPPORTED = {
    "invalid_length": "reject",  # L = 0: a long frame needs C, A and CI
    "invalid_length2": "reject",  # CI = 73h with 15 bytes: the fixed structure has 16
    "manual_frame1": "not hex",  # "D 04 04 ..." is not a frame at all
    "manual_frame4": "SND_UD",  # master frames: SND_UD data send (set primary address etc.)
    "manual_frame5": "SND_UD",
    "manual_frame6": "SND_UD",
    "svm_f22_telegram2": "decode",  # DIF 1Fh: everything after it is manufacturer data, more follows
}

TEST_FRAME_NAMES = frame_names(TEST_FRAMES)


def _record_indexes(problems: list[str]) -> set[int]:
    return {int(match.group(1)) for p in problems if (match := re.match(r"record (\d+) ", p))}


@pytest.mark.parametrize("name", TEST_FRAME_NAMES)
def test_test_frame_matches_libmbus(name: str) -> None:
    decoded = decode_frame(read_hex(TEST_FRAMES / f"{name}.hex"))
    problems = compare(decoded, read_expected(name))
    if name in KNOWN_DIFFERENCES:
        _, records = KNOWN_DIFFERENCES[name]
        assert _record_indexes(problems) == records, problems
        assert all(p.startswith("record ") for p in problems), problems
    else:
        assert problems == []


@pytest.mark.parametrize("name", TEST_FRAME_NAMES)
def test_fast_path_agrees_with_construct_path(name: str) -> None:
    data = read_hex(TEST_FRAMES / f"{name}.hex")
    reference = decode_frame_reference(data)
    assert decode_frame(data) == reference
    assert decode_frame(data) == reference  # the second time through the cached plan


def test_corpus_match_count() -> None:
    """Count the frames that match libmbus fully; print the count for the README."""
    matched = [
        name
        for name in TEST_FRAME_NAMES
        if not compare(decode_frame(read_hex(TEST_FRAMES / f"{name}.hex")), read_expected(name))
    ]
    records = sum(len(read_expected(n).records) for n in TEST_FRAME_NAMES)
    print(
        f"\nlibmbus conformance: {len(matched)}/{len(TEST_FRAME_NAMES)} frames match fully, "
        f"{len(TEST_FRAME_NAMES) - len(matched)} known differences (standard followed), {records} records compared"
    )
    assert set(TEST_FRAME_NAMES) - set(matched) == set(KNOWN_DIFFERENCES)


@pytest.mark.parametrize("name", frame_names(ERROR_FRAMES))
def test_error_frame(name: str) -> None:
    data = read_hex(ERROR_FRAMES / f"{name}.hex")
    if name in APPLICATION_ERROR_REPORTS:
        decoded = decode_frame(data)
        assert decoded["ci_field"] == 0x70
        assert decoded["application_error"] == APPLICATION_ERROR_REPORTS[name]
        assert decoded["records"] == []
    else:
        with pytest.raises(DecodeError):
            decode_frame(data)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_frame(name: str) -> None:
    text = (UNSUPPORTED_FRAMES / f"{name}.hex").read_text()
    expectation = UNSUPPORTED[name]
    if expectation == "not hex":
        with pytest.raises(ValueError):
            read_hex(UNSUPPORTED_FRAMES / f"{name}.hex")
        return
    data = bytes.fromhex(text)
    if expectation == "reject":
        with pytest.raises(DecodeError):
            decode_frame(data)
    elif expectation == "SND_UD":
        decoded = decode_frame(data)
        assert decoded["function"] == "SND_UD" and decoded["command"] == "data_send"
        assert decoded["records"]
    else:
        decoded = decode_frame(data)
        assert decoded["more_records_follow"] is True
        assert decoded["records"] == [] and decoded["manufacturer_data"]


def test_every_corpus_file_is_covered() -> None:
    assert set(frame_names(UNSUPPORTED_FRAMES)) == set(UNSUPPORTED)
    assert len(TEST_FRAME_NAMES) == 76
    assert set(KNOWN_DIFFERENCES) <= set(TEST_FRAME_NAMES)
    assert set(APPLICATION_ERROR_REPORTS) <= set(frame_names(ERROR_FRAMES))
