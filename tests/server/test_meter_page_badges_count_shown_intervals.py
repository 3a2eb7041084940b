"""A day's badge on the meter page (the days' table and each bar's title: "1 estimated of 2 intervals")
counts the reads of the intervals the day counts. Before, it counted every read of a quality other
than actual that closed an interval that day, with those whose interval the page leaves out (across an
installation boundary of a meter fitted again: billing bills no account for it): a day of actual
intervals only, drawn as one, said "1 estimated". Then the page gave the day's count, but a day of
several qualities, one of them the left-out interval's read's, said "2 not actual (edited or
estimated)": the day's query (server.meters.repository._DAILY) still counted that read. It now counts
the reads of the intervals the refresh stored, so the badge names each one's quality."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from server.meters.repository import daily_consumption
from server.web.daily_chart import Day, chart
from tests.server.test_consumption_between_installations import T0, _lives_with_bench_reads, _store_bad_reads
from tests.server.test_meter_page_daily_cards_as_billed import MONTHS, Fitting, Reads, _record

QUALITIES = ("edited", "estimated", "substituted")


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


def test_a_read_across_a_re_fit_is_not_in_its_day_s_badge(migrated_database_url: str) -> None:
    """X at SP-1 from 1 October, read 2 October, removed 3 October; fitted at SP-2 on 10 October with no
    card, its first read there (11 October 06:00) estimated, then an actual one at 18:00. The interval from
    2 October to that estimate crosses the re-fit: the page leaves it out, and 11 October counts one
    interval, actual. Before, its badge said "1 estimated of 1 intervals" beside a bar drawn actual."""
    url = migrated_database_url
    _record(
        url,
        [(_at(1, 0), _at(3, 6), None, None), (_at(10, 0), None, None, None)],
        [
            (_at(2, 6), Decimal("1.100")),
            (_at(2, 18), Decimal("1.200")),
            (_at(11, 6), Decimal("2.050")),
            (_at(11, 18), Decimal("2.150")),
        ],
    )
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(
            "UPDATE readings SET quality = 'estimated', quality_by = 'vee', quality_reason = 'gap' WHERE ts = %s",
            (_at(11, 6),),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
        days = daily_consumption(conn, "X", 400)  # type: ignore[arg-type]  # dict rows, as the page reads them
    drawn = chart(days)
    assert drawn is not None
    refit = next(day for day in drawn.days if day.date == date(2026, 10, 11))
    assert (refit.volume_m3, refit.intervals, refit.not_actual) == (Decimal("0.100"), 1, 0)
    assert refit.mark == "actual"
    assert refit.said == ""  # one actual interval: the table says "1 actual"


def test_a_day_of_several_qualities_names_only_its_counted_intervals_reads(migrated_database_url: str) -> None:
    """As above, 11 October's first read (06:00, across the re-fit) estimated, and its two counted
    intervals closed by edited reads (12:00, 18:00): the badge says "2 edited". Before, the day's
    qualities were 1 estimated and 2 edited for 2 intervals, and it said "2 not actual (edited or
    estimated)"."""
    url = migrated_database_url
    _record(
        url,
        [(_at(1, 0), _at(3, 6), None, None), (_at(10, 0), None, None, None)],
        [
            (_at(2, 6), Decimal("1.100")),
            (_at(2, 18), Decimal("1.200")),
            (_at(11, 6), Decimal("2.050")),
            (_at(11, 12), Decimal("2.100")),
            (_at(11, 18), Decimal("2.150")),
        ],
    )
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for ts, quality in ((_at(11, 6), "estimated"), (_at(11, 12), "edited"), (_at(11, 18), "edited")):
            conn.execute(
                "UPDATE readings SET quality = %s, quality_by = 'ops', quality_reason = 'x' WHERE ts = %s",
                (quality, ts),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
        days = daily_consumption(conn, "X", 400)  # type: ignore[arg-type]  # dict rows, as the page reads them
    refit = next(row for row in days if row["date"] == date(2026, 10, 11))
    assert (refit["consumption_m3"], refit["intervals"], refit["not_actual"]) == (Decimal("0.100"), 2, 2)
    assert refit["qualities"] == {"edited": 2}
    drawn = chart(days)
    assert drawn is not None
    assert next(day for day in drawn.days if day.date == date(2026, 10, 11)).said == "2 edited of 2 intervals"


@st.composite
def _lives_of_several_qualities(draw: st.DrawFn) -> tuple[list[Fitting], Reads, list[str]]:
    """A life of re-fits, bench reads and bad reads (test_consumption_between_installations), each read
    of a quality drawn."""
    installations, reads = draw(_lives_with_bench_reads())
    qualities = draw(st.lists(st.sampled_from(("actual", *QUALITIES)), min_size=len(reads), max_size=len(reads)))
    return installations, reads, qualities


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(life=_lives_of_several_qualities())
# read at the old place, on the bench and at the new, every read estimated or edited: the intervals to
# the bench and from it are left out, and so are their reads; the meter's first read closes none
@example(
    life=(
        [
            (T0 + timedelta(hours=24), T0 + timedelta(hours=30), None, None),
            (T0 + timedelta(hours=40), None, None, None),
        ],
        [
            (T0 + timedelta(hours=h), Decimal(v))
            for h, v in ((25, "10.000"), (29, "10.100"), (33, "10.200"), (35, "10.300"), (41, "10.400"), (45, "10.500"))
        ],
        ["estimated", "edited", "estimated", "edited", "estimated", "edited"],
    )
)
def test_each_day_s_qualities_are_those_of_the_reads_closing_its_stored_intervals(
    migrated_database_url: str, life: tuple[list[Fitting], Reads, list[str]]
) -> None:
    """On an hourly grid each stored hour is one interval, closed by the read at its end: a day's
    qualities are the qualities of the reads ending its stored hours, those other than actual counted,
    so they add up to the day's not_actual, whatever installations, bench reads and bad reads the
    meter had."""
    installations, reads, qualities = life
    url = migrated_database_url
    _record(url, installations, [(ts, max(m3, Decimal(0))) for ts, m3 in reads])
    with psycopg.connect(url, autocommit=True) as conn:
        for (ts, _), quality in zip(reads, qualities, strict=True):
            if quality != "actual":
                conn.execute(
                    "UPDATE readings SET quality = %s, quality_by = 'ops', quality_reason = 'x' WHERE ts = %s",
                    (quality, ts),
                )
    _store_bad_reads(url, reads)  # and refreshes the days
    quality_at = {ts: quality for (ts, _), quality in zip(reads, qualities, strict=True)}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        hours = conn.execute("SELECT hour, intervals FROM consumption_hourly WHERE meter_id = 'X'").fetchall()
        days = daily_consumption(conn, "X", 400)  # type: ignore[arg-type]  # dict rows, as the page reads them
    assert all(hour["intervals"] == 1 for hour in hours)  # reads on the hour: one interval an hour
    expected: dict[date, Counter[str]] = {}
    for hour in hours:
        closing = quality_at[hour["hour"] + timedelta(hours=1)]
        counted = expected.setdefault(hour["hour"].astimezone(UTC).date(), Counter())  # the utility's zone: UTC
        if closing != "actual":
            counted[closing] += 1
    assert {row["date"]: Counter(row["qualities"]) for row in days if row["intervals"]} == expected
    for row in days:
        assert sum(row["qualities"].values()) == (row["not_actual"] or 0), row


def _said_counts(said: str) -> dict[str, int]:
    """The counts a day's words give: ``{"estimated": 1, "not actual": 2}``."""
    counted = said.partition(" of ")[0]
    found: dict[str, int] = {}
    for part in counted.split(", "):
        number, _, what = part.partition(" ")
        if number.isdigit() and "unknown" not in what:
            found[what] = int(number)
    return found


@given(
    qualities=st.dictionaries(st.sampled_from(QUALITIES), st.integers(1, 30), max_size=3),
    not_actual=st.integers(0, 30),
    extra=st.integers(0, 30),
)
def test_a_day_s_badge_counts_as_many_not_actual_as_the_day_counts(
    qualities: dict[str, int], not_actual: int, extra: int
) -> None:
    """Whatever reads of each quality closed the day (some perhaps of intervals not counted), the badge
    gives as many not actual as the day's intervals counted, and names a quality only of those read that
    day, no more times than it was."""
    day = Day(
        date=date(2026, 10, 11),
        volume_m3=Decimal("1"),
        intervals=not_actual + extra,
        not_actual=not_actual,
        qualities=qualities,
    )
    said = _said_counts(day.said)
    assert sum(said.values()) == not_actual
    for what, n in said.items():
        if what in qualities:
            assert n <= qualities[what]
        else:
            assert what.startswith("not actual")
    assert day.mark == ("not-actual" if not_actual else "actual")


def test_a_day_whose_reads_cannot_tell_the_counted_quality_says_the_count_among_them() -> None:
    """An estimated and an edited read closed the day's intervals, one of them left out: which is not known."""
    day = Day(
        date=date(2026, 10, 11),
        volume_m3=Decimal("1"),
        intervals=3,
        not_actual=1,
        qualities={"estimated": 1, "edited": 1},
    )
    assert day.said == "1 not actual (edited or estimated) of 3 intervals"
    assert Day(date=day.date, volume_m3=Decimal("1"), intervals=3, not_actual=1, qualities={"edited": 2}).said == (
        "1 edited of 3 intervals"
    )
