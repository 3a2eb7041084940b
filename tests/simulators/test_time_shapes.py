"""The simulators' times (``simulate modbus-tcp --installed``, a rig file's ``installed``, a wire
fault's ``start`` and ``end``) are read in the shape a stored time is, refused in the same words.

Before, ``simulators.ground_truth.parse_iso_utc`` was Python's ``fromisoformat`` alone: ``12.5``
(ISO 8601's 12:30) was half a second past 12:00, and any character between the date and the time
was taken (``2026-11-02x10:00Z`` was 10:00), where every other input path refused both
(``aquami.stored_times.shape_problem``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.stored_times import shape_problem
from simulators.ground_truth import parse_iso_utc
from simulators.wire_faults import WireFault
from tests.simulators.test_rig_config import BASE

#: What a person may write for a time, right or nearly: a date, any one character, a time whose
#: fraction may sit on any field (or have no digit), and an offset or none.
NEAR_TIMES = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["2026-11-02", "20261102", "1970-01-01", "0001-01-01", "9999-12-31"]),
    st.characters(),
    st.from_regex(r"[0-9]{2}(:?[0-9]{2}){0,2}([.,][0-9]{0,9}){0,2}", fullmatch=True),
    st.sampled_from(["Z", "+00:00", "-05:30", "+0530", "", "z"]),
)
FRACTION_ON_NO_SECONDS = "has a fraction on no seconds, or one with no digit: ISO 8601 reads 12.5 as 12:30"


@given(st.one_of(NEAR_TIMES, st.text()))
def test_what_a_stored_time_s_shape_refuses_the_simulators_refuse_in_the_same_words(text: str) -> None:
    problem = shape_problem(text)
    if problem is None:
        return
    with pytest.raises(ValueError) as refused:
        parse_iso_utc(text)
    assert str(refused.value) == f"{text!r} {problem}"


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),  # the documented form
        ("2026-01-01 00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),  # RFC 3339's space
        ("2026-01-01T01:30+01:00", datetime(2026, 1, 1, 0, 30, tzinfo=UTC)),
        ("2026-01-01T00:00:00.25Z", datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)),  # a second's fraction
        ("20260101T000000Z", datetime(2026, 1, 1, tzinfo=UTC)),  # ISO 8601's basic format
    ],
)
def test_an_iso_8601_time_with_its_offset_is_read_as_before(text: str, instant: datetime) -> None:
    assert parse_iso_utc(text) == instant


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-01-01T00:00:00", "'2026-01-01T00:00:00' needs a UTC offset (Z or +hh:mm)"),  # as before: no offset
        ("2026-01-01", "'2026-01-01' is no ISO 8601 time"),  # as before (it had no offset)
        ("2026-01-01T00:00:00Z ", "'2026-01-01T00:00:00Z ' is no ISO 8601 time"),  # as before: no blanks
        ("2026-13-01T00:00:00Z", "'2026-13-01T00:00:00Z' is no ISO 8601 time"),
        ("0001-01-01T00:00:00+01:00", "'0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC"),
    ],
)
def test_other_refusals_are_one_line_starting_with_the_text(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        parse_iso_utc(text)


def test_the_modbus_simulator_s_installed_flag_refuses_the_shape_naming_the_flag() -> None:
    """(A year ahead, so that the command, before, refused it as in the future rather than serve.)"""
    for text, says in (("2999-11-02x10:00Z", "is no ISO 8601 time"), ("2999-11-02T12.5Z", FRACTION_ON_NO_SECONDS)):
        result = CliRunner().invoke(
            app, ["simulate", "modbus-tcp", "--port", "0", "--installed", text], env={"COLUMNS": "400"}
        )
        assert result.exit_code == 2, result.output
        assert f"Invalid value for --installed: {text!r} {says}" in result.output  # (before: "in the future")


@pytest.mark.parametrize(
    ("text", "says"), [("2026-01-01x00:00:00Z", "is no ISO 8601 time"), ("2026-01-01T00.5Z", FRACTION_ON_NO_SECONDS)]
)
def test_a_rig_file_s_installed_is_refused_by_check_naming_the_file_line_and_key(
    tmp_path: Path, text: str, says: str
) -> None:
    rig = tmp_path / "rig.toml"
    rig.write_text(BASE.replace("2026-01-01T00:00:00Z", text))
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(rig), "--check"], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output  # (before: 0, the rig installed at midnight, or 00:00:00.5)
    assert f"rig.toml:3: rig.installed: {text!r} {says}" in result.output


def test_a_wire_fault_s_start_and_end_are_refused_naming_the_key() -> None:
    for key in ("start", "end"):
        with pytest.raises(ValueError, match=f"^wire fault: {key}: '2026-11-02T12.5Z' {FRACTION_ON_NO_SECONDS}"):
            WireFault.from_json({"kind": "slow", key: "2026-11-02T12.5Z"})
