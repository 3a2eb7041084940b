"""Each meter's own read interval: a fleet of hourly and daily meters is validated and estimated per meter.

Before, VEE took one hourly interval for the whole fleet: every daily meter's read was flagged a gap
and each round inserted 23 hourly estimates per daily meter per day (20,000 daily meters: 40,000 gap
flags and 920,000 estimates a round), and each round estimated the gaps of its whole 28-day look-back
to keep its own 2 days (13,340,000 estimates computed, 920,000 kept).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.estimation import estimate
from collector.vee.intervals import STANDARD_INTERVALS_S, nearest_standard, read_intervals
from collector.vee.rules import validate
from collector.vee.runner import run_vee
from collector.vee.series import Series

T0 = datetime(2026, 2, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
DAYS = 30
DAY = 86400.0
HOUR = 3600.0


def _meter(step: float, phase: float, rate_m3h: float, drop: frozenset[int] = frozenset()) -> tuple[Any, Any]:
    ts = T0 + phase + np.arange(int(DAYS * DAY // step)) * step
    keep = np.array([i not in drop for i in range(len(ts))])
    return ts[keep], np.round(100.0 + (ts[keep] - T0) / HOUR * rate_m3h, 3)


def _fleet(meters: dict[str, tuple[np.ndarray, np.ndarray]]) -> Series:
    names = sorted(meters)
    code = np.concatenate([np.full(len(meters[n][0]), i) for i, n in enumerate(names)])
    ts = np.concatenate([meters[n][0] for n in names])
    volume = np.concatenate([meters[n][1] for n in names])
    return Series.from_arrays(names, code, ts, volume, VeeConfig(), flow=np.full(len(ts), 0.01))


def _mixed() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "H-hourly": _meter(HOUR, 0.0, 0.02),
        "H-hourly-gap": _meter(
            HOUR, 0.0, 0.02, drop=frozenset({DAYS * 24 - 10, DAYS * 24 - 9})
        ),  # two hours, in the last day
        "D-daily": _meter(DAY, 6 * HOUR, 0.02),  # read at 06:00 every day
        "D-daily-missing": _meter(DAY, 0.0, 0.02, drop=frozenset({DAYS - 2})),  # the last day but one is missing
        "D-daily-old-gap": _meter(DAY, 0.0, 0.02, drop=frozenset({5})),  # a missing day weeks before the period
    }


def test_each_meter_gets_its_own_interval_and_slot_grid():
    series = _fleet(_mixed())
    found = read_intervals(series, VeeConfig())
    interval, phase = found.interval_s, found.phase_s
    by_name = dict(zip(series.meter_ids, zip(interval.tolist(), phase.tolist(), strict=True), strict=True))
    assert by_name["H-hourly"] == (HOUR, 0.0) and by_name["H-hourly-gap"] == (HOUR, 0.0)
    assert by_name["D-daily"] == (DAY, 6 * HOUR) and by_name["D-daily-missing"] == (DAY, 0.0)


def test_a_daily_meter_s_regular_reads_are_no_gaps_and_a_missing_day_is_one_estimate_at_its_slot():
    series = _fleet(_mixed())
    now = float(series.ts.max())
    validation = validate(series, VeeConfig(), now)
    gaps = {series.meter_ids[series.meter[i]] for i in validation.flagged("gap")}
    assert gaps == {"H-hourly-gap", "D-daily-missing", "D-daily-old-gap"}
    since = now - 2 * DAY
    est = estimate(series, validation, VeeConfig(), since=since)
    got = sorted((series.meter_ids[m], t) for m, t in zip(est.meter.tolist(), est.ts.tolist(), strict=True))
    missing_day = T0 + (DAYS - 2) * DAY
    assert got == [
        ("D-daily-missing", missing_day),  # one read at the meter's own 00:00, not 23 hourly ones
        ("H-hourly-gap", T0 + (DAYS * 24 - 10) * HOUR),
        ("H-hourly-gap", T0 + (DAYS * 24 - 9) * HOUR),
    ]
    # the old gap closed before the period: its round estimated it; this one computes nothing for it
    assert len(estimate(series, validation, VeeConfig())) == 4


@settings(max_examples=60, deadline=None)
@given(
    interval=st.sampled_from(STANDARD_INTERVALS_S.tolist()),
    hour=st.integers(0, 23),
    jitter=st.lists(st.floats(-0.2, 0.2), min_size=30, max_size=30),
    drop=st.sets(st.integers(1, 25), max_size=6),
)
def test_the_interval_is_the_usual_spacing_of_the_meter_s_reads(interval, hour, jitter, drop):
    """30 reads at a standard interval, each up to a fifth of it (at most 20 minutes) early or late,
    up to six missing, no four steps in a row at one other interval (every other read missing four
    times in a row is a meter reading at twice the interval then: test_vee_interval_change.py): the
    meter's interval and reading hour are found, and only a step longer than 1.5 intervals is a gap."""
    phase = (hour * HOUR) % interval if interval > HOUR else 0.0
    ts = T0 + phase + np.arange(30) * interval + np.array(jitter) * min(interval, 6000.0)
    keep = np.array([i not in drop for i in range(30)])
    ts = ts[keep]
    other = nearest_standard(np.diff(ts)) != interval
    assume(not any(other[i : i + 4].all() for i in range(len(other) - 3)))
    volume = 1.0 + np.arange(len(ts), dtype=np.float64) * 0.001
    series = Series.from_arrays(["M"], np.zeros(len(ts), np.int64), ts, volume, VeeConfig())
    found = read_intervals(series, VeeConfig())
    assert found.interval_s.tolist() == [interval] and found.phase_s.tolist() == [phase]
    gaps = validate(series, VeeConfig(), float(ts.max())).masks["gap"]
    assert gaps[1:].tolist() == (np.diff(ts) > 1.5 * interval).tolist()


@settings(max_examples=40, deadline=None)
@given(
    minutes=st.sampled_from([5, 10, 15, 20, 30, 60, 24 * 60]),  # what AMI loggers are set to
    missing=st.integers(10, 100),
    stamp=st.floats(-0.04, 0.04),  # the reads stamped a little before or after their slots (a share)
)
def test_a_meter_read_at_a_common_interval_is_judged_at_it(minutes, missing, stamp):
    """A meter read every 5, 10, 15, 20 or 30 minutes, hourly or daily, one read missing: its
    interval is found, its reads are no gaps, and the missing read is one gap with one estimate, at
    its slot. Before, 10 and 20 minutes were no standard interval and went to 15: a 10-minute meter's
    missing read (1,200 s between reads, under 1.5 x 900 s) was no gap and never estimated, and a
    20-minute meter's (2,400 s) was estimated at a 15-minute slot (16:45, not its 16:40), with 900 s
    written to ``meters.read_interval_s`` for billing."""
    interval = minutes * 60.0
    ts = T0 + np.arange(120) * interval + stamp * min(interval, HOUR)
    volume = np.round(100.0 + np.arange(120) * 0.001, 3)
    keep = np.arange(120) != missing
    series = Series.from_arrays(["M"], np.zeros(int(keep.sum()), np.int64), ts[keep], volume[keep], VeeConfig())
    found = read_intervals(series, VeeConfig())
    assert found.interval_s.tolist() == [interval]
    validation = validate(series, VeeConfig(), float(ts.max()), intervals=found)
    assert series.ts[validation.flagged("gap")].tolist() == [ts[missing + 1]]
    estimates = estimate(series, validation, VeeConfig())
    assert estimates.ts.tolist() == [T0 + missing * interval]


def test_a_meter_with_too_few_reads_keeps_the_configured_interval():
    ts = T0 + np.array([0.0, DAY, 2 * DAY])
    series = Series.from_arrays(["NEW"], np.zeros(3, np.int64), ts, np.array([1.0, 1.1, 1.2]), VeeConfig())
    assert read_intervals(series, VeeConfig()).interval_s.tolist() == [3600.0]
    assert read_intervals(series, VeeConfig(interval_min_steps=2)).interval_s.tolist() == [DAY]


def test_a_round_over_a_mixed_fleet_writes_no_gap_flags_or_estimates_for_daily_reads(migrated_database_url):
    url = migrated_database_url
    meters = _mixed()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        # each meter's interval as the rounds of its 30 days found it: the old gap was its round's
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, read_interval_s) VALUES (%s, true, %s)",
            [(n, 3600 if n.startswith("H") else 86400) for n in meters],
        )
        with cur.copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as copy:
            for name, (ts, volume) in meters.items():
                for t, v in zip(ts.tolist(), volume.tolist(), strict=True):
                    at = datetime.fromtimestamp(t, UTC)
                    copy.write_row((name, at, f"{v:.3f}", at))
    now = datetime.fromtimestamp(max(float(ts.max()) for ts, _ in meters.values()), UTC)
    end = now + timedelta(hours=1)
    with psycopg.connect(url) as conn:
        report = run_vee(conn, end - timedelta(days=2), end, VeeConfig(), now=now)
        estimated = conn.execute(
            "SELECT meter_id, count(*) FROM readings WHERE quality = 'estimated' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        gaps = conn.execute(
            "SELECT meter_id, count(*) FROM vee_flags WHERE rule = 'gap' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert estimated == [("D-daily-missing", 1), ("H-hourly-gap", 2)]
    assert gaps == [("D-daily-missing", 1), ("H-hourly-gap", 1)]
    assert report.estimates == 3 and report.flags["gap"] == 2
