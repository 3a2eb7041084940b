"""A meter reconfigured to read less often (15-minute reads to hourly, to save its battery) has its
new interval at once, not once the new reads are most of the 28 days VEE loads."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from collector.vee.config import VeeConfig
from collector.vee.estimation import estimate
from collector.vee.intervals import read_intervals
from collector.vee.rules import validate
from collector.vee.series import Series

T0 = datetime(2026, 2, 2, tzinfo=UTC).timestamp()
QUARTER, HOUR, DAY = 900.0, 3600.0, 86400.0


def _reads(*stretches: tuple[float, int]) -> np.ndarray:
    """Read times: stretches of (interval, count) one after another from T0."""
    times = [T0]
    for step, count in stretches:
        times.extend(times[-1] + step * np.arange(1, count + 1))
    return np.array(times)


def _series(meters: dict[str, np.ndarray]) -> Series:
    names = sorted(meters)
    code = np.concatenate([np.full(len(meters[n]), i, np.int64) for i, n in enumerate(names)])
    ts = np.concatenate([meters[n] for n in names])
    volume = np.round(100 + (ts - T0) / HOUR * 0.01, 3)
    return Series.from_arrays(names, code, ts, volume, VeeConfig())


def test_a_meter_now_read_hourly_is_hourly_at_once_and_its_reads_are_no_gaps():
    """20 days of 15-minute reads, then 8 days hourly with none missing, beside a 15-minute meter
    with one read missing. Before, the reconfigured meter kept the median's 900 s: all 48 of its
    reads in a round's two days were gaps, with 144 estimates invented between them."""
    changed = _reads((QUARTER, 20 * 96), (HOUR, 8 * 24))
    steady = np.delete(_reads((QUARTER, 28 * 96)), 28 * 96 - 10)
    series = _series({"CHANGED": changed, "STEADY": steady})
    interval = read_intervals(series, VeeConfig()).interval_s
    assert interval.tolist() == [HOUR, QUARTER]
    now = float(series.ts.max()) + 60
    validation = validate(series, VeeConfig(), now)
    recent = series.ts >= now - 2 * DAY
    gaps = validation.masks["gap"] & recent
    assert [series.meter_ids[m] for m in series.meter[gaps]] == ["STEADY"]
    est = estimate(series, validation, VeeConfig(), since=now - 2 * DAY)
    assert [series.meter_ids[m] for m in est.meter] == ["STEADY"]


def test_a_new_interval_takes_over_after_four_reads_at_it_either_way():
    """Fewer than four hourly steps after the 15-minute ones are a few missing reads; four are
    the new interval. The same holds for a meter now read every 15 minutes instead of hourly: it
    waited for the median, until its new steps were most of its 28 days (some two weeks), as the
    round's two days still held its hourly reads, which the one 900 s interval called gaps; each
    step is now judged at the interval the meter was reading at then, and neither is a gap."""
    for hourly, expected in ((3, QUARTER), (4, HOUR)):
        series = _series({"M": _reads((QUARTER, 20 * 96), (HOUR, hourly))})
        assert read_intervals(series, VeeConfig()).interval_s.tolist() == [expected], hourly
    for quarters, expected in ((3, HOUR), (4, QUARTER), (2 * 96, QUARTER)):
        shorter = _series({"M": _reads((HOUR, 26 * 24), (QUARTER, quarters))})
        assert read_intervals(shorter, VeeConfig()).interval_s.tolist() == [expected], quarters
        now = float(shorter.ts.max()) + 60
        assert not validate(shorter, VeeConfig(), now).masks["gap"].any()


def test_a_meter_now_read_daily_takes_its_reading_hour_from_its_daily_reads():
    """24 days of 15-minute reads, then five daily reads at 06:00: the daily grid's hour was the
    median time of day of all 28 days' reads, mostly the 15-minute ones around the clock, so the
    meter's missing days were estimated at 12:00 and its 06:00 reads rounded to that grid."""
    quarter_hours = _reads((QUARTER, 24 * 96))
    six = (quarter_hours[-1] // DAY + 1) * DAY + 6 * HOUR
    daily = np.concatenate([quarter_hours, six + DAY * np.arange(5)])
    found = read_intervals(_series({"M": daily}), VeeConfig())
    assert (found.interval_s.tolist(), found.phase_s.tolist()) == ([DAY], [6 * HOUR])
