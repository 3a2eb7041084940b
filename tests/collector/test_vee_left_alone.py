"""Estimates earlier code left in gaps the current rules leave for a person (across a backward
register step, longer than 62 days, next to a read whose time is wrong) go at the next run over the
gap: ``vee:no-estimate`` in ``reading_history``, the gap flagged "not estimated", consumption
refreshed (collector/vee/leftovers.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vee.config import VeeConfig
from collector.vee.estimation import left_alone
from collector.vee.intervals import ReadIntervals, read_intervals
from collector.vee.leftovers import estimates_left_alone, measured_neighbours
from collector.vee.rules import validate
from collector.vee.series import B, Series
from tests.collector.vee_back_runs import back_run, estimates_deleted_by

OPENED = datetime(2026, 9, 1, 10, tzinfo=UTC)  # the gap's opening read, of an hourly meter
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
TABLES = ("readings", "reading_history", "vee_flags", "register_discontinuities", "consumption_hourly", "meters")


def _hourly(start: datetime, count: int, volume: float, step_m3: float = 0.010) -> list[tuple[datetime, Decimal]]:
    return [(start + k * HOUR, Decimal(f"{volume + k * step_m3:.3f}")) for k in range(count)]


def _replacement() -> tuple[list[tuple[datetime, Decimal]], datetime]:
    """A register at 500 m³, 3 reads missing, then a new meter's register from 2 m³."""
    closing = OPENED + 4 * HOUR
    return _hourly(OPENED - 47 * HOUR, 48, 499.530) + _hourly(closing, 24, 2.000), closing


def _too_long() -> tuple[list[tuple[datetime, Decimal]], datetime]:
    """63 days silent (the rules estimate up to 62)."""
    closing = OPENED + 63 * DAY
    return _hourly(OPENED - 47 * HOUR, 48, 100.000) + _hourly(closing, 24, 115.590), closing


def _ahead() -> tuple[list[tuple[datetime, Decimal]], datetime]:
    """3 reads missing, then a read stamped 2 days ahead of when it came (its clock ran fast)."""
    closing = OPENED + 4 * HOUR
    return [*_hourly(OPENED - 47 * HOUR, 48, 100.000), (closing + 2 * DAY, Decimal("100.510"))], closing


def _silent_replacement() -> tuple[list[tuple[datetime, Decimal]], datetime]:
    """40 days silent, the meter replaced meanwhile: the gap opens before a run's look-back."""
    closing = OPENED + 40 * DAY
    return _hourly(OPENED - 47 * HOUR, 48, 499.530) + _hourly(closing, 24, 2.000), closing


def _silent_ahead() -> tuple[list[tuple[datetime, Decimal]], datetime]:
    """40 days silent, then a read stamped 2 days ahead: the gap opens before a run's look-back."""
    closing = OPENED + 40 * DAY
    return [*_hourly(OPENED - 47 * HOUR, 48, 100.000), (closing + 2 * DAY, Decimal("109.990"))], closing


def _silent_after_a_glitch() -> tuple[list[tuple[datetime, Decimal]], datetime]:
    """A register at 1234.5 m³ reads 0.000 once (a glitch, a bad_read: the next read is back at
    1234.5 and more), then 40 days silent: the gap opens before a run's look-back."""
    closing = OPENED + 40 * DAY
    glitch = (OPENED, Decimal("0.000"))
    return [*_hourly(OPENED - 47 * HOUR, 47, 1234.030), glitch, *_hourly(closing, 24, 1235.000)], closing


CASES: dict[str, Callable[[], tuple[list[tuple[datetime, Decimal]], datetime]]] = {
    "across a replacement": _replacement,
    "over 62 days": _too_long,
    "beside a read stamped ahead": _ahead,
    "40 days across a replacement": _silent_replacement,
    "40 days up to a read stamped ahead": _silent_ahead,
    "40 days after a glitch read": _silent_after_a_glitch,
}


def _setup(url: str, reads: list[tuple[datetime, Decimal]], closing: datetime, with_old: bool) -> int:
    """Meter M's reads (each received at its own time, the one stamped ahead 2 days before it) and,
    ``with_old``, the linear estimates earlier code wrote in the gap (received with the closing
    read, as the round after it wrote them); the consumption of every day as rounds left it. The
    number of estimates."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")
        conn.execute("INSERT INTO meters (meter_id, registered, read_interval_s) VALUES ('M', true, 3600)")
        opening = dict(reads)[OPENED]
        end, last = next((t, v) for t, v in reads if t > OPENED)
        old = []
        if with_old:
            hours = int((end - OPENED) / HOUR)  # (up to the read stamped ahead: its false time)
            for k in range(1, hours):
                volume = opening + (last - opening) * k / hours
                old.append((OPENED + k * HOUR, volume.quantize(Decimal("0.001")), "estimated", end))
        with conn.cursor().copy(
            "COPY readings (meter_id, ts, volume_m3, quality, received_at, quality_by, quality_reason) FROM STDIN"
        ) as cp:
            for t, v in reads:
                cp.write_row(("M", t, v, "actual", min(t, closing + HOUR), None, None))
            for t, v, q, received in old:
                cp.write_row(("M", t, v, q, received + HOUR, "vee:linear", "linear estimate (older code)"))
        conn.execute("SELECT refresh_consumption(%s, %s)", (OPENED - 3 * DAY, OPENED + 70 * DAY))
        return len(old)


def _state(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT ts, volume_m3, quality FROM readings ORDER BY ts").fetchall(),
            conn.execute("SELECT ts, rule, detail FROM vee_flags ORDER BY 1, 2").fetchall(),
            conn.execute("SELECT hour, consumption_m3, not_actual FROM consumption_hourly ORDER BY 1").fetchall(),
        )


@pytest.mark.parametrize("case", list(CASES))
def test_a_back_run_deletes_estimates_the_rules_would_not_make(migrated_database_url, case):
    """Earlier code filled the gap with linear estimates on the meter's own hourly slots: across the
    step from 500 m³ down to a new meter's 2 m³ (124.5 m³ back an hour), through 63 silent days, or
    up to a read stamped 2 days ahead, and the last two after 40 silent days too, the gap opening
    before the back-run's 28-day look-back. Being on the right slots, they stood for good
    (a back-run, ``aquami collector vee --from … --to …``, kept them: the gap was filled, flagged
    "; estimated"). Now the back-run over the gap's closing read deletes them (``vee:no-estimate``)
    and leaves exactly what it leaves without them: no estimate, the gap flagged "not estimated",
    the same consumption; the reads stay, and a second back-run changes nothing."""
    url = migrated_database_url
    reads, closing = CASES[case]()
    start, end = closing - 6 * HOUR, closing + 3 * DAY
    _setup(url, reads, closing, with_old=False)
    back_run(url, start, end)
    expected = _state(url)
    assert [(rule, "not estimated" in detail) for _, rule, detail in expected[1] if rule == "gap"] == [("gap", True)]

    old = _setup(url, reads, closing, with_old=True)
    assert old > 0
    report = back_run(url, start, end)
    assert report["estimates"] == 0 and report["gaps_not_estimated"] == 1
    assert _state(url) == expected
    assert estimates_deleted_by(url) == {"vee:no-estimate": old}
    back_run(url, start, end)
    assert _state(url) == expected and estimates_deleted_by(url) == {"vee:no-estimate": old}


def _left_alone_over_whole_meters(
    series: Series, intervals: ReadIntervals, estimated_gaps: B, config: VeeConfig, now: float
) -> B:
    """The oracle: the same check over the candidate meters' whole series (no windows)."""
    _, after, both = measured_neighbours(series)
    candidates = (series.quality == "estimated") & both & estimated_gaps[after]
    found = np.zeros(len(series), bool)
    if not candidates.any():
        return found
    drop = candidates | ~np.isin(series.meter, np.unique(series.meter[candidates]))
    validation = validate(series.without(drop), config, now, intervals=intervals.without(drop))
    closing = np.flatnonzero(validation.masks["gap"])
    alone = np.flatnonzero(~drop)[closing[left_alone(validation, config, closing)]]
    found[candidates] = np.isin(after[candidates], alone)
    return found


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), days=st.integers(1, 8))
def test_the_windows_judge_each_gap_as_the_meter_s_whole_series_does(seed, days):
    """estimates_left_alone validates only each candidate gap's reads and one either side: on
    fleets with steps back (50 L to 400 m³), glitch reads of 0, reads stamped ahead of their arrival
    and 5 % of reads estimated, it finds exactly the estimates a validation of the meters' whole
    series finds."""
    rng = np.random.default_rng(seed)
    config = VeeConfig()
    meters, hours = 12, 24 * 10
    ts = (1_780_000_000 // 3600 * 3600 + np.tile(np.arange(hours), meters) * 3600.0).astype(np.float64)
    rise = rng.exponential(0.01, (meters, hours))
    rise[rng.random((meters, hours)) < 0.01] = -rng.choice([0.05, 50.0, 400.0])
    volume = 500 + np.cumsum(rise, axis=1)
    volume[rng.random((meters, hours)) < 0.005] = 0.0
    quality = np.where(rng.random(meters * hours) < 0.05, "estimated", "actual")
    quality[::hours] = quality[hours - 1 :: hours] = "actual"
    received = (ts - np.where(rng.random(meters * hours) < 0.005, 3 * 86400.0, 0.0)).astype(np.float64)
    series = Series.from_arrays(
        [f"M{i}" for i in range(meters)],
        np.repeat(np.arange(meters), hours),
        ts,
        np.round(volume.ravel(), 3),
        config,
        quality=quality,
        received=received,
    )
    now = float(ts.max()) + 3600
    intervals = read_intervals(series, config)
    estimated_gaps = series.ts >= now - days * 86400
    found = estimates_left_alone(series, measured_neighbours(series), intervals, estimated_gaps, config, now)
    assert (found == _left_alone_over_whole_meters(series, intervals, estimated_gaps, config, now)).all()
