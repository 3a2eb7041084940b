"""Fractions of a time, read alike by every file a person supplies times in: ACCOUNTS.csv and
METERS.csv (aquami.stored_times, truncated to the microsecond stored) and ``aquami detect``'s
READINGS.csv (truncated to the second it works in).

Before, a fraction on the hour or minute was read as a fraction of a second (Python's
``fromisoformat``): ``12.5``, ISO 8601's 12:30, was stored as 12:00:00.5, in every one of them, and
READINGS.csv took ``2026-01-01x00:00:00Z`` as midnight, which stored times already refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.stored_times import StoredTimeError, stored_time
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.meters import read_meters_csv
from collector.detection.files.readings import read_readings_csv

ANY_INSTANT = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9998, 12, 31))


def _readings_ts(path: Path, text: str) -> int:
    path.write_text(f"meter_id,ts,volume_m3\nM1,{text},1\n")
    [seconds] = read_readings_csv(path).ts_s.tolist()
    return int(seconds)


@given(wall=ANY_INSTANT, digits=st.text("0123456789", min_size=1, max_size=15), mark=st.sampled_from(".,"))
def test_a_fraction_of_a_second_is_truncated_to_the_microsecond_stored_and_the_second_detect_reads(
    tmp_path_factory: pytest.TempPathFactory, wall: datetime, digits: str, mark: str
) -> None:
    """Nanoseconds (``.123456789``, as some head-ends write) are taken, not refused: the instant moves
    by less than a microsecond, towards the past, so never into the next second, day or year (where
    PostgreSQL, which rounds, would carry 23:59:59.9999999 to the next day)."""
    whole = wall.replace(microsecond=0)
    text = f"{whole:%Y-%m-%dT%H:%M:%S}{mark}{digits}Z"
    expected = whole.replace(tzinfo=UTC) + timedelta(microseconds=int(digits[:6].ljust(6, "0")))
    assert stored_time(text) == expected
    if mark == ".":  # a comma is READINGS.csv's field separator
        path = tmp_path_factory.mktemp("r") / "READINGS.csv"
        assert _readings_ts(path, text) == int(whole.replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T12.5Z",  # ISO 8601's 12:30, read as 12:00:00.5
        "2026-01-01T12:00.5Z",  # 12:00:30, read as 12:00:00.5
        "2026-01-01T12:00:00.Z",  # no digit, read as 12:00:00
        "2026-01-01T12:00:00.5.5Z",
        "2026-01-01T12:00:00+05:30:00.5",  # an offset with a fraction
    ],
)
def test_a_fraction_on_no_seconds_is_refused_in_every_file(tmp_path: Path, text: str) -> None:
    said = re.escape("has a fraction on no seconds, or one with no digit: ISO 8601 reads 12.5 as 12:30")
    text_ = re.escape(text)
    with pytest.raises(StoredTimeError, match=f"^'{text_}' {said}"):
        stored_time(text)
    meters = tmp_path / "METERS.csv"
    meters.write_text(f"meter_id,dma,role,installed_at\nM1,D1,customer,{text}\n")
    with pytest.raises(CsvFormatError, match=f"row 2: installed_at: '{text_}' {said}"):
        read_meters_csv(meters)
    with pytest.raises(CsvFormatError, match=f"row 2: ts '{text_}': {said}"):
        _readings_ts(tmp_path / "READINGS.csv", text)


def test_a_readings_time_with_no_t_between_its_date_and_time_is_refused_as_a_stored_one(tmp_path: Path) -> None:
    """``2026-01-01x00:00:00Z`` was read as midnight in READINGS.csv (a stored time refused it)."""
    with pytest.raises(CsvFormatError, match=r"row 2: ts '2026-01-01x00:00:00Z': is no ISO 8601 time"):
        _readings_ts(tmp_path / "READINGS.csv", "2026-01-01x00:00:00Z")
    assert _readings_ts(tmp_path / "READINGS.csv", "2026-01-01 00:00:00.5Z") == 1_767_225_600
