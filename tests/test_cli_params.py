"""An instant option (``--from``, ``--at``…: cli_params.iso_datetime) reads a time as a stored time is
read (stored_times.aware_utc), to the same instant or refused alike; only a date alone or a time
without an offset is taken as well, in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import typer
from hypothesis import given
from hypothesis import strategies as st

from aquami.cli_params import iso_datetime
from aquami.stored_times import StoredTimeError, stored_time

OFFSETS = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
SEPARATORS = st.sampled_from(["T", "t", " "])
TIMESPECS = st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"])


def _option(text: str) -> datetime | None:
    try:
        return iso_datetime(text)
    except typer.BadParameter:
        return None


def _stored(text: str) -> datetime | None:
    try:
        return stored_time(text)
    except StoredTimeError:
        return None


@given(st.datetimes(), OFFSETS, SEPARATORS, TIMESPECS)
def test_a_time_with_an_offset_is_read_as_a_stored_one(moment: datetime, offset: timezone, sep: str, spec: str) -> None:
    text = moment.replace(tzinfo=offset).isoformat(sep=sep, timespec=spec)
    assert _option(text) == _stored(text)


@given(st.datetimes(), SEPARATORS, TIMESPECS)
def test_a_time_without_an_offset_is_in_utc(moment: datetime, sep: str, spec: str) -> None:
    text = moment.isoformat(sep=sep, timespec=spec)
    assert _stored(text) is None  # a file's time needs its offset
    assert _option(text) == _stored(f"{text}Z")


@given(st.dates())
def test_a_date_alone_is_its_midnight_in_utc(day: date) -> None:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert _option(day.isoformat()) == _stored(f"{day.isoformat()}T00:00:00Z")
    assert _option(day.isoformat()) in (midnight, None)


@given(st.text(max_size=40))
def test_any_text_is_read_as_an_instant_in_the_stored_years_or_refused(text: str) -> None:
    moment = _option(text)
    assert moment is None or (moment.tzinfo is UTC and _stored(moment.isoformat()) == moment)
