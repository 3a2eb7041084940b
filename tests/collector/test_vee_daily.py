"""Daily meters' missing days: one estimate a day at the meter's own reading time, each showing
the day's use, whatever second the gateway stamped the reads with and across a change of clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.estimation import Estimates, estimate
from collector.vee.rules import validate
from collector.vee.runner import run_vee
from collector.vee.series import Series

DAY = 86400.0
HOUR = 3600.0
LONDON = ZoneInfo("Europe/London")


def _daily(times: list[datetime], missing: set[int], per_day: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    ts = np.array([t.timestamp() for t in times])
    volume = np.round(100.0 + np.arange(len(ts)) * per_day, 3)
    keep = np.array([i not in missing for i in range(len(ts))])
    return ts[keep], volume[keep]


def _estimated(ts: np.ndarray, volume: np.ndarray, zone: tzinfo = UTC) -> tuple[Series, Estimates]:
    config = VeeConfig()
    series = Series.from_arrays(["D"], np.zeros(len(ts), np.int64), ts, volume, config)
    validation = validate(series, config, float(ts.max()) + 60, zone)
    return series, estimate(series, validation, config, zone, since=float(ts.max()) - 6 * DAY)


def test_a_daily_meter_stamped_seconds_past_its_hour_has_each_missing_day_estimated_with_its_use():
    """Read at 06:00:07 UTC, 0.5 m³ a day, three days missing. Before, the profile (learned at the
    reads' 06:00–07:00 hour) weighed the estimates' hour zero: four estimates, all 112.500, the last
    7 s before the closing read, which then held all 2 m³ (and was flagged over_max_flow)."""
    times = [datetime(2026, 2, 2, 6, 0, 7, tzinfo=UTC) + timedelta(days=i) for i in range(30)]
    ts, volume = _daily(times, {26, 27, 28})
    _, est = _estimated(ts, volume)
    assert [datetime.fromtimestamp(t, UTC) for t in est.ts] == [datetime(2026, 2, d, 6, tzinfo=UTC) for d in (28,)] + [
        datetime(2026, 3, d, 6, tzinfo=UTC) for d in (1, 2)
    ]
    assert est.volume.tolist() == [113.0, 113.5, 114.0]


def test_a_daily_meter_read_at_its_local_hour_has_its_missing_days_at_that_hour_after_the_clocks_change():
    """Read at 06:00 London time, three days missing a few days after the clocks went forward. Before,
    the slot grid was the winter's 06:00 UTC: four estimates at 07:00 local for three missing days,
    the first an hour after the meter's real read, all at the opening register."""
    times = [datetime(2026, 3, 5, 6, tzinfo=LONDON) + timedelta(days=i) for i in range(35)]
    ts, volume = _daily(times, {29, 30, 31})
    _, est = _estimated(ts, volume, LONDON)
    assert [datetime.fromtimestamp(t, LONDON).replace(tzinfo=None) for t in est.ts] == [
        datetime(2026, 4, d, 6) for d in (3, 4, 5)
    ]
    use = np.diff(np.concatenate([[114.0], est.volume, [116.0]]))
    assert ((use > 0.45) & (use < 0.55)).all(), use


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from([UTC, LONDON, ZoneInfo("America/New_York"), ZoneInfo("Australia/Sydney")]),
    hour=st.integers(0, 23),
    stamp_s=st.integers(0, 59),
    start_day=st.integers(0, 364),
    missing=st.sets(st.integers(27, 31), min_size=1, max_size=5),
)
def test_daily_estimates_fall_one_a_missing_day_at_the_meter_s_local_hour_and_show_its_use(
    zone, hour, stamp_s, start_day, missing
):
    """A daily meter read at a local hour (stamped up to a minute past it), 0.5 m³ a day, some of
    its last days missing, any time of year: one estimate per missing day, at that local hour, each
    day's use between 0.4 and 0.6 m³ (a clock change's 23- or 25-hour day shifts a little)."""
    first = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=start_day)
    times = [datetime(first.year, first.month, first.day, hour, tzinfo=zone) + timedelta(days=i) for i in range(33)]
    times = [t + timedelta(seconds=stamp_s) for t in times]
    ts, volume = _daily(times, missing)
    series, est = _estimated(ts, volume, zone)
    expected = [times[i].replace(second=0) for i in sorted(missing)]
    assert [datetime.fromtimestamp(t, UTC) for t in est.ts] == [t.astimezone(UTC) for t in expected]
    registers = dict(zip(series.ts.tolist(), series.volume.tolist(), strict=True))
    for gap_start in np.unique(est.gap_start).tolist():
        in_gap = est.gap_start == gap_start
        ends = [registers[gap_start], *est.volume[in_gap].tolist(), registers[float(est.gap_end[in_gap][0])]]
        use = np.diff(ends)
        assert ((use > 0.4) & (use < 0.6)).all(), use


def test_a_round_over_a_daily_meter_s_gap_leaves_its_real_read_unflagged(migrated_database_url):
    """The round after the gap, and the next over the same days. Before, the next round flagged the
    meter's own closing read over_max_flow (2 m³ in 7 s), which made the bill line incomplete. The
    gap stays flagged while its estimates stand."""
    times = [datetime(2026, 2, 2, 6, 0, 7, tzinfo=UTC) + timedelta(days=i) for i in range(30)]
    reads = [(t, f"{100 + 0.5 * i:.3f}") for i, t in enumerate(times) if i not in (26, 27, 28)]
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('D1', true)")
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp:
            for t, v in reads:
                cp.write_row(("D1", t, v, t))
        conn.commit()
        now = reads[-1][0] + timedelta(minutes=5)
        start, end = now - timedelta(days=5), now + timedelta(hours=1)
        first = run_vee(conn, start, end, now=now)
        again = run_vee(conn, start, end, now=now)
        conn.execute("SELECT refresh_consumption(%s, %s)", (start, end))
        hourly = conn.execute("SELECT max(consumption_m3), sum(unknown) FROM consumption_hourly").fetchone()
    assert first.estimates == 3 and first.flags["gap"] == 1
    assert {rule: n for rule, n in again.flags.items() if n} == {"gap": 1}
    assert hourly is not None and float(hourly[0]) == 0.5 and hourly[1] == 0
