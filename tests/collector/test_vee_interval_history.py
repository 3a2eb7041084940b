"""A meter whose read interval changed is judged, at each step, at the interval it was reading at
then: its history at the old interval holds no gaps and gets no estimates, and a gap in either
stretch is still estimated on that stretch's slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.store import ReadingStore
from collector.vee.config import VeeConfig
from collector.vee.estimation import estimate
from collector.vee.rounds import vee_round
from collector.vee.rules import validate
from collector.vee.series import Series

T0 = datetime(2026, 2, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
HOUR, DAY = 3600.0, 86400.0
#: interval sequences a meter goes through: an AMI upgrade, a battery saved, a daily meter made hourly
SEQUENCES = [(3600, 900), (900, 3600), (86400, 3600), (3600, 86400), (900, 86400), (86400, 900), (3600, 900, 3600)]


def _history(intervals: tuple[int, ...], counts: list[int], hour: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Read times: ``counts[i]`` hours' steps at ``intervals[i]`` (days' for a daily one), one
    stretch after the other, the first read at ``hour`` o'clock; and each stretch's (first, last)
    read index (the last read of one is the first of the next)."""
    times = [T0 + hour * HOUR]
    bounds = []
    for interval, count in zip(intervals, counts, strict=False):
        steps = count if interval >= HOUR else count * int(HOUR // interval)  # whole hours
        first = len(times) - 1
        times.extend(times[-1] + interval * np.arange(1, steps + 1))
        bounds.append((first, len(times) - 1))
    return np.array(times), bounds


def _validated(ts: np.ndarray) -> tuple[Series, np.ndarray, np.ndarray]:
    """(series, the gap flags, the estimates' times) of one meter's reads at ``ts``, 10 L an hour."""
    config = VeeConfig()
    volume = np.round(100.0 + (ts - T0) / HOUR * 0.010, 3)
    series = Series.from_arrays(["M"], np.zeros(len(ts), np.int64), ts, volume, config)
    validation = validate(series, config, float(ts.max()) + 60)
    return series, validation.masks["gap"], estimate(series, validation, config).ts


@settings(max_examples=80, deadline=None)
@given(
    intervals=st.sampled_from(SEQUENCES),
    counts=st.lists(st.integers(12, 60), min_size=3, max_size=3),
    hour=st.integers(0, 23),
    gap=st.tuples(st.integers(0, 2), st.floats(0.0, 1.0), st.integers(1, 3)),
)
def test_complete_stretches_at_any_intervals_have_no_gaps_and_a_gap_in_any_of_them_is_estimated(
    intervals, counts, hour, gap
):
    """Complete reads at each interval in turn (8 to 60 hours, or days, at each): no gap
    flag, no estimate. Before, every step was judged at the meter's one interval (the median's, or
    the newer longer one): each hourly read before 15-minute ones was a gap with three estimates.
    Then up to three reads missing inside one stretch (at least one of its steps either side: a gap
    right at the change could be either interval's): one gap, estimated at those very times."""
    ts, bounds = _history(intervals, counts, hour)
    _, gaps, estimated = _validated(ts)
    assert not gaps.any() and len(estimated) == 0
    stretch, where, missing = gap
    first, last = bounds[stretch % len(intervals)]
    inside = np.arange(first + 2, last - 1)  # a read with a step of the stretch before and after it
    if len(inside) < missing + 1:
        return
    start = int(inside[int(where * (len(inside) - missing))])
    dropped = np.arange(start, start + missing)
    series, gaps, estimated = _validated(np.delete(ts, dropped))
    assert series.ts[gaps].tolist() == [ts[start + missing]]
    assert estimated.tolist() == ts[dropped].tolist()


def test_hourly_history_imported_after_a_meter_moved_to_15_minute_reads_gets_no_estimates(migrated_database_url):
    """The soak's case: two meters read every 15 minutes for 8 days, their hourly reads of the 20
    days before imported after (as a late spool or ``aquami demo``'s history arrives). The next
    round wrote 3 estimates into each of the 480 complete hours of each meter (2,880) and flagged
    each hourly read a gap (960); now none."""
    url = migrated_database_url
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    switch = now - timedelta(days=8)
    meters = ["M-1", "M-2"]

    def volume(t: datetime) -> str:
        return f"{100 + (t - switch).total_seconds() / 3600 * 0.010 + 20:.3f}"

    with psycopg.connect(url) as conn:
        conn.cursor().executemany("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", [(m,) for m in meters])
    store = ReadingStore(url)
    try:
        quarters = [switch + timedelta(minutes=15 * k) for k in range(8 * 96 + 1)]
        store.write([(m, t.isoformat(), volume(t), None, None, [], "gw-1", 1) for m in meters for t in quarters])
        first = vee_round(url, now + timedelta(minutes=1))
        hourly = [switch - timedelta(hours=h) for h in range(20 * 24, 0, -1)]
        store.write([(m, t.isoformat(), volume(t), None, None, [], "history", 0) for m in meters for t in hourly])
        second = vee_round(url, now + timedelta(minutes=2))
    finally:
        store.close()
    assert first is not None and second is not None
    with psycopg.connect(url) as conn:
        estimated = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
        flagged = conn.execute("SELECT count(*) FROM vee_flags WHERE rule = 'gap'").fetchone()
        interval = conn.execute("SELECT array_agg(DISTINCT read_interval_s) FROM meters").fetchone()
    assert second["estimates"] == 0 and second["flags"]["gap"] == 0
    assert estimated == (0,) and flagged == (0,)
    assert interval == ([900],)
