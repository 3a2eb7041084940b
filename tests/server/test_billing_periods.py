"""Billing periods in the utility's calendar, and NEM12 days in its standard time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.billing.nem12 import ZoneNotExportable, check_exportable, standard_time
from server.billing.service import parse_period
from server.problems import Problem

ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))


# From 2000: before it, a few zones (Danmarkshavn 1996, Vostok 1994) jumped hours at a month's midnight.
@given(st.integers(2000, 2090), st.integers(1, 12), st.sampled_from(ZONES))
def test_a_month_runs_from_local_midnight_on_the_first_to_the_next_first(year: int, month: int, name: str) -> None:
    zone = ZoneInfo(name)
    start, end = parse_period(f"{year:04d}-{month:02d}", zone)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    assert (local_start.year, local_start.month, local_start.day) == (year, month, 1)
    next_month = (year + month // 12, month % 12 + 1)
    assert (local_end.year, local_end.month, local_end.day) == (*next_month, 1)
    # Midnight, except where the zone skips it (a few zones change their clocks at 00:00).
    assert local_start.time() <= datetime(2000, 1, 1, 1).time()
    assert timedelta(days=27) < end - start < timedelta(days=32)


def test_dates_are_local_and_date_times_keep_their_offset() -> None:
    london = ZoneInfo("Europe/London")
    assert parse_period("2026-07", london) == (
        datetime(2026, 6, 30, 23, tzinfo=UTC),
        datetime(2026, 7, 31, 23, tzinfo=UTC),
    )
    assert parse_period("2026-01", london)[0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_period("2026-07-01/2026-07-02", london) == (
        datetime(2026, 6, 30, 23, tzinfo=UTC),
        datetime(2026, 7, 1, 23, tzinfo=UTC),
    )
    assert parse_period("2026-07-01T00:00Z/2026-07-02T00:00+02:00", london) == (
        datetime(2026, 7, 1, tzinfo=UTC),
        datetime(2026, 7, 1, 22, tzinfo=UTC),
    )
    assert parse_period("2026-02") == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(Problem):
        parse_period("2026-07-02/2026-07-01", london)


@pytest.mark.parametrize(
    ("name", "hours"),
    [("UTC", 0), ("Europe/London", 0), ("Australia/Sydney", 10), ("America/New_York", -5), ("Asia/Kolkata", 5.5)],
)
def test_nem12_days_are_standard_time_all_year(name: str, hours: float) -> None:
    fixed = standard_time(ZoneInfo(name))
    for month in (1, 4, 7, 10):
        assert fixed.utcoffset(datetime(2026, month, 15)) == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("period", "name"),
    [
        ("9999-12", "UTC"),  # ends in year 10000
        ("0000-05", "UTC"),  # no year 0
        ("0001-01", "Asia/Tokyo"),  # local midnight is in year 0 in UTC
        ("0001-01-01/2026-01-01", "Asia/Tokyo"),
        ("0001-01-01T00:00+01:00/2026-01-01T00:00Z", "UTC"),
        ("2026-01-01/9999-12-31T23:00-10:00", "UTC"),
    ],
)
def test_a_period_beyond_the_calendar_is_an_invalid_period(period: str, name: str) -> None:
    with pytest.raises(Problem) as raised:
        parse_period(period, ZoneInfo(name))
    assert raised.value.status == 400 and raised.value.title == "Invalid period"


@given(st.sampled_from(ZONES), st.datetimes(datetime(2026, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)))
def test_nem12_refuses_exactly_the_zones_whose_local_hours_are_not_its_standard_time_hours(
    name: str, instant: datetime
) -> None:
    """NEM12 takes a standard-time hour's value from the local hour that begins at the same instant:
    right where the two clocks show the same minutes all year. Lord Howe Island's summer (+11:00
    beside +10:30) cut every local hour across two, and its summer hours were exported as null data."""
    zone = ZoneInfo(name)
    local, standard = instant.astimezone(zone), instant.astimezone(standard_time(zone))
    try:
        check_exportable(zone)
    except ZoneNotExportable as refused:
        assert "minutes in summer" in str(refused)
        assert name in ("Australia/Lord_Howe", "Australia/LHI")  # the only such zone in today's rules
        return
    assert (local.minute, local.second) == (standard.minute, standard.second)


def test_lord_howe_island_is_refused_with_its_half_hour() -> None:
    with pytest.raises(ZoneNotExportable, match="Australia/Lord_Howe puts its clocks forward by 30 minutes"):
        check_exportable(ZoneInfo("Australia/Lord_Howe"))
    for name in ("Australia/Adelaide", "Asia/Kolkata", "Australia/Sydney", "UTC"):  # half-hour offsets, whole-hour DST
        check_exportable(ZoneInfo(name))


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
    st.integers(1, 14 * 60),
    st.sampled_from(ZONES),
)
def test_a_period_s_offset_whose_plus_a_url_read_as_a_space_is_named_with_what_to_write(
    start: datetime, minutes: int, name: str
) -> None:
    """``period=2026-12-01T00:00+11:00/2026-12-08T00:00+11:00`` typed into a URL reaches the server
    with spaces for the ``+``: it was "'2026-12-01T00:00 11:00' is not a date or a date-time", which
    says nothing of the ``+``. The period written right is read as before."""
    offset, start = timezone(timedelta(minutes=minutes)), start.replace(second=0, microsecond=0)
    first, second = start.replace(tzinfo=offset), (start + timedelta(days=7)).replace(tzinfo=offset)
    period = f"{first.isoformat(timespec='minutes')}/{second.isoformat(timespec='minutes')}"
    assert parse_period(period, ZoneInfo(name)) == (first.astimezone(UTC), second.astimezone(UTC))
    with pytest.raises(Problem, match="write it %2B") as refused:
        parse_period(period.replace("+", " "), ZoneInfo(name))
    assert refused.value.status == 400 and refused.value.detail.startswith(repr(period.split("/")[0].replace("+", " ")))
