"""A VEE run over a period brings the estimates of the gaps it estimates to what the current rules
make: estimates earlier code wrote off the meter's slots at its interval, or for a meter whose steps
are no gaps yet (its interval not known), are replaced; reads, edits and substitutions stay, and
consumption is refreshed for the days touched (collector/vee/leftovers.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.estimation import estimate
from collector.vee.intervals import read_intervals
from collector.vee.leftovers import (
    estimates_at_read_slots,
    estimates_off_slots,
    estimates_outside_gaps,
    measured_neighbours,
)
from collector.vee.rounds import vee_and_consumption, vee_round
from collector.vee.rules import validate
from collector.vee.runner import run_vee
from collector.vee.series import Series
from tests.collector.vee_back_runs import back_run, estimates_deleted_by

FIRST = datetime(2026, 11, 2, 6, tzinfo=UTC)  # a daily meter's first read, at its reading hour
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
TABLES = ("readings", "reading_history", "vee_flags", "consumption_hourly", "consumption_daily", "meters")


def _volume(t: datetime) -> str:  # 10 L an hour
    return f"{1 + (t - FIRST).total_seconds() / 3600 * 0.010:.3f}"


def _reset(url: str, interval_s: int | None) -> None:
    """Meter M alone; ``interval_s``: the read interval earlier rounds stored for it."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")
        conn.execute("INSERT INTO meters (meter_id, registered, read_interval_s) VALUES ('M', true, %s)", (interval_s,))


def _store(
    url: str, times: list[datetime], quality: str = "actual", by: str | None = None, written: datetime | None = None
) -> None:
    """Rows of meter M at ``times``, on one line: the meter's reads, each received at its own time,
    or (quality ``estimated``, by ``vee:linear``) estimates as a round at ``written`` wrote them."""
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            "COPY readings (meter_id, ts, volume_m3, received_at, quality, quality_by, quality_reason) FROM STDIN"
        ) as cp,
    ):
        for t in times:
            reason = None if by is None else "linear estimate (older code)"
            cp.write_row(("M", t, _volume(t), written or t, quality, by, reason))


def _refresh_all(url: str) -> None:
    """Consumption over every day, as the rounds of those days left it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT refresh_consumption(%s, %s)", (FIRST - 40 * DAY, FIRST + 40 * DAY))


def _rows(url: str, quality: str | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT ts, volume_m3, quality, quality_by FROM readings "
            "WHERE %(q)s::text IS NULL OR quality::text = %(q)s ORDER BY ts",
            {"q": quality},
        ).fetchall()


def _measured(url: str) -> list[tuple[Any, ...]]:
    return [row for row in _rows(url) if row[2] != "estimated"]


def _consumption(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {
            "hourly": conn.execute(
                "SELECT hour, consumption_m3, not_actual FROM consumption_hourly ORDER BY 1"
            ).fetchall(),
            "daily": conn.execute("SELECT day, consumption_m3 FROM consumption_daily ORDER BY 1").fetchall(),
        }


def test_a_back_run_gives_a_daily_meter_s_missing_day_one_estimate_for_the_old_hourly_ones(migrated_database_url):
    """The meter of test_vee_new_meter.py read daily at 06:00 from 2 November, its 3 November read
    missing. Rounds before 96766cf left 25 hourly estimates in its gap, 2 Nov 18:00 to 3 Nov 18:00
    (they judged its first step hourly; the 4th read made it daily and deleted those at its reads'
    slots), no gap flag, and stored its interval, 86,400 s. A back-run from 4 November 00:00 (the
    gap closes at 06:00) kept all 25; now they go (``vee:re-slot``), the gap gets its one estimate
    at 3 Nov 06:00 and its flag, the reads stay, and the consumption of 2 and 3 November, before the
    run's period, is what a refresh of every day gives."""
    url = migrated_database_url
    _reset(url, 86400)
    _store(url, [FIRST + k * DAY for k in (0, 2, 3, 4, 5, 6)])
    old = [FIRST + 12 * HOUR + h * HOUR for h in range(25)]
    _store(url, old, "estimated", "vee:linear", written=FIRST + 2 * DAY + 5 * MINUTE)  # the round after the gap
    _refresh_all(url)
    reads, before = _measured(url), _consumption(url)
    assert len(_rows(url, "estimated")) == 25

    report = back_run(url, FIRST + 2 * DAY - 6 * HOUR, FIRST + 7 * DAY)

    assert report["estimates"] == 1
    assert _rows(url, "estimated") == [(FIRST + DAY, Decimal(_volume(FIRST + DAY)), "estimated", "vee:profile")]
    assert _measured(url) == reads
    assert estimates_deleted_by(url) == {"vee:re-slot": 25}
    with psycopg.connect(url) as conn:
        gaps = conn.execute("SELECT ts, detail FROM vee_flags WHERE rule = 'gap'").fetchall()
    assert [(t, detail.endswith("; estimated")) for t, detail in gaps] == [(FIRST + 2 * DAY, True)]
    kept = _consumption(url)
    _refresh_all(url)
    assert kept == _consumption(url) != before
    # and a second back-run changes nothing
    back_run(url, FIRST + 2 * DAY - 6 * HOUR, FIRST + 7 * DAY)
    assert _rows(url, "estimated") == [(FIRST + DAY, Decimal(_volume(FIRST + DAY)), "estimated", "vee:profile")]
    assert estimates_deleted_by(url) == {"vee:re-slot": 25}


def test_a_new_meter_s_old_hourly_estimates_go_while_its_interval_is_not_known(migrated_database_url):
    """A new meter read daily at 06:00, 2 reads so far: before 96766cf the round after its 2nd read
    judged the step hourly and wrote 23 estimates. Its interval is not known yet (1 step, none
    stored), so the step is no gap: a back-run kept the 23, now deletes them (``vee:no-gap``) and
    writes none, and the day's consumption is refreshed."""
    url = migrated_database_url
    _reset(url, None)
    _store(url, [FIRST, FIRST + DAY])
    _store(url, [FIRST + h * HOUR for h in range(1, 24)], "estimated", "vee:linear", written=FIRST + DAY + 5 * MINUTE)
    _refresh_all(url)
    reads = _measured(url)

    report = back_run(url, FIRST + 12 * HOUR, FIRST + 2 * DAY)

    assert report["estimates"] == 0
    assert _rows(url, "estimated") == []
    assert _measured(url) == reads
    assert estimates_deleted_by(url) == {"vee:no-gap": 23}
    kept = _consumption(url)
    _refresh_all(url)
    assert kept == _consumption(url)
    assert not any(not_actual for _, _, not_actual in kept["hourly"])


#: (the meter's interval, the stale estimates' grid) in seconds, and the meter's reading hour
GRIDS = [(3600, 900), (900, 3600), (3600, 1800), (1800, 1200), (86400, 3600), (3600, 7200), (900, 600)]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    grids=st.sampled_from(GRIDS),
    missing=st.integers(2, 6),
    shift=st.integers(0, 3),
    supplied=st.sampled_from([None, "first", "last"]),
    start_at=st.sampled_from(["before the gap", "its first closing read"]),
)
def test_a_run_over_a_gap_makes_what_a_run_without_the_old_estimates_makes(
    migrated_database_url, grids, missing, shift, supplied, start_at
):
    """A meter read every ``interval`` seconds for 10 days (20 reads at least; its interval stored),
    ``missing`` reads missing, their gap filled by earlier code at another grid (``stale`` seconds
    apart, shifted by a quarter of it ``shift`` times), perhaps with the first or last missing read
    supplied by a person (a substitution). A run over a period holding the reads that close the
    gap's parts leaves the same readings (estimates' times and volumes too), flags and consumption as the same
    run over the same reads without the old estimates, and a second run changes no reading and no
    consumption."""
    interval, stale = grids
    url = migrated_database_url
    step = timedelta(seconds=interval)
    count = max(int(10 * DAY / step), 20)
    times = [FIRST + k * step for k in range(count)]
    gap_from = count // 2
    lost = times[gap_from : gap_from + missing]
    opening, closing = times[gap_from - 1], times[gap_from + missing]
    reads = [t for t in times if t not in lost]
    substituted = {None: None, "first": lost[0], "last": lost[-1]}[supplied]
    old = []
    t = opening + timedelta(seconds=stale * shift / 4)
    while t < closing:
        if t > opening:
            old.append(t)
        t += timedelta(seconds=stale)
    # each gap left (the substitution splits it) has old estimates that are not its slots (else
    # they stay, with their volumes, as they should: a gap estimated with a profile is not
    # estimated again each run, as its profile's 28 days move on)
    ends = sorted({opening, closing, substituted or opening})
    for left, right in pairwise(ends):
        if right - left > step * VeeConfig().gap_factor:
            assume({t for t in old if left < t < right} != {t for t in lost if left < t < right})
    # the run's period from before the gap or from the first read closing a part of it
    start = {"before the gap": opening - 6 * HOUR, "its first closing read": substituted or closing}[start_at]
    end = times[-1] + HOUR
    config = VeeConfig()

    def run() -> None:
        with psycopg.connect(url) as conn:
            vee_and_consumption(conn, start, end, config, now=end)
            conn.commit()

    def state() -> tuple[Any, ...]:
        with psycopg.connect(url) as conn:
            # (gaps too: a gap filled, by the old estimates or a run's, is flagged as one)
            flags = conn.execute("SELECT ts, rule, detail FROM vee_flags ORDER BY 1, 2").fetchall()
        return _rows(url), flags, _consumption(url)

    def setup(with_old: bool) -> None:
        _reset(url, interval)
        _store(url, reads)
        if with_old:
            _store(url, old, "estimated", "vee:linear", written=closing + 5 * MINUTE)
        if substituted is not None:
            with psycopg.connect(url) as conn:
                conn.execute(
                    "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason, received_at) "
                    "VALUES ('M', %s, %s, 'substituted', 'a person', 'site visit', %s) "
                    "ON CONFLICT (meter_id, ts) DO UPDATE SET volume_m3 = EXCLUDED.volume_m3, "
                    "quality = 'substituted', quality_by = 'a person', quality_reason = 'site visit'",
                    (substituted, _volume(substituted), closing + MINUTE),
                )
        _refresh_all(url)

    setup(with_old=False)
    run()
    expected = state()
    setup(with_old=True)
    measured = _measured(url)
    run()
    assert state() == expected
    assert _measured(url) == measured
    history = estimates_deleted_by(url)
    run()
    assert state() == expected and estimates_deleted_by(url) == history


def test_a_validation_only_run_that_finds_a_new_meter_s_interval_leaves_its_gaps_to_the_next_run(
    migrated_database_url,
):
    """A new meter read daily at 06:00, its 3 November read missing: on its 4th read (3 steps) the
    interval is found. If the run that found it was ``run_vee(estimate_gaps=False)``, it stored the
    interval, and the next run, the interval no longer new to it, estimated only gaps closing in its
    own period: the missing day (its gap closing on 4 November) was never estimated. Now a run
    that does not estimate stores no interval found for the first time, and the next run estimates
    the gap, one estimate at 06:00."""
    url = migrated_database_url
    _reset(url, None)
    _store(url, [FIRST + k * DAY for k in (0, 2, 3, 4)])
    start, end = FIRST + 3 * DAY + 12 * HOUR, FIRST + 4 * DAY + HOUR
    with psycopg.connect(url) as conn:
        run_vee(conn, start, end, now=end, estimate_gaps=False)
        conn.commit()
    assert _rows(url, "estimated") == []
    assert vee_round(url, end) is not None
    assert [t for t, *_ in _rows(url, "estimated")] == [FIRST + DAY]


@settings(max_examples=60, deadline=None)
@given(
    interval=st.sampled_from([300, 600, 900, 1200, 1800, 3600, 7200, 21600, 43200, 86400]),
    zone=st.sampled_from(["UTC", "Europe/London", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe"]),
    hour=st.integers(0, 23),
    stamp_s=st.integers(0, 59),
    start_day=st.integers(0, 364),
    missing=st.lists(st.tuples(st.integers(5, 50), st.integers(1, 8)), min_size=1, max_size=4),
)
def test_what_a_run_estimates_is_on_its_slots_to_the_next_run(interval, zone, hour, stamp_s, start_day, missing):
    """A meter read every ``interval`` seconds from a local hour of any day of the year (stamped up
    to a minute past its slot), some runs of reads missing: the estimates VEE makes for them, stored
    to the microsecond and loaded with the reads by the next run, are exactly their gaps' slots
    (none replaced, so no run estimates a gap again and again), and stand in gaps at no read's slot."""
    tz = ZoneInfo(zone)
    config = VeeConfig()
    first = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=start_day)
    start = datetime(first.year, first.month, first.day, hour, tzinfo=tz)
    if interval == 86400:  # at the local hour, summer and winter (aware arithmetic is the wall clock's)
        times = [start + k * DAY for k in range(70)]
    else:
        times = [start.astimezone(UTC) + k * timedelta(seconds=interval) for k in range(70)]
    lost = {at + k for at, length in missing for k in range(length)}
    kept = [t for i, t in enumerate(times) if i not in lost]
    ts = np.array([t.timestamp() + stamp_s for t in kept])
    volume = np.round(100 + (ts - ts[0]) / 3600 * 0.01, 3)
    series = Series.from_arrays(["M"], np.zeros(len(ts), np.int64), ts, volume, config)
    now = float(ts.max()) + 60
    intervals = read_intervals(series, config, tz)
    est = estimate(series, validate(series, config, now, tz, intervals), config, tz)
    stored = np.round(est.ts * 1e6) / 1e6  # timestamptz
    both = Series.from_arrays(
        ["M"],
        np.zeros(len(ts) + len(est), np.int64),
        np.concatenate([ts, stored]),
        np.concatenate([volume, est.volume]),
        config,
        quality=np.array(["actual"] * len(ts) + ["estimated"] * len(est)),
    )
    again = read_intervals(both, config, tz)
    neighbours = measured_neighbours(both)
    everywhere = np.ones(len(both), bool)
    off = estimates_off_slots(both, neighbours, again.read_interval_s, again.read_phase_s, everywhere, tz)
    outside = estimates_outside_gaps(both, neighbours, again.read_interval_s, config, again.known)
    at_read = estimates_at_read_slots(both, neighbours, again.read_interval_s, again.read_phase_s, tz)
    assert len(est) > 0
    assert not off.any() and not outside.any() and not at_read.any()
