"""A meter's new interval takes over after 4 steps at it; the estimates VEE wrote into its first
steps, judged at the old interval, go once those steps are no gaps (collector/vee/leftovers.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.vee.rounds import vee_round

SWITCH = datetime(2026, 11, 20, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
#: (old interval, new interval) in seconds: to less frequent reads, where the old one invents estimates
SWITCHES = [(3600, 86400), (900, 3600), (900, 86400), (3600, 7200), (1800, 3600)]


def _volume(t: datetime) -> str:  # 10 L an hour
    return f"{120 + (t - SWITCH).total_seconds() / 3600 * 0.010:.3f}"


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("readings", "reading_history", "vee_flags", "consumption_hourly", "consumption_daily", "meters"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")


def _store(url: str, times: list[datetime]) -> None:
    """Reads of meter M, each received at its own time."""
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp,
    ):
        for t in times:
            cp.write_row(("M", t, _volume(t), t))


def _estimates(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
    assert row is not None
    return int(row[0])


def _consumption(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {
            "hourly": conn.execute(
                "SELECT meter_id, hour, consumption_m3, not_actual FROM consumption_hourly ORDER BY 1, 2"
            ).fetchall(),
            "daily": conn.execute(
                "SELECT meter_id, day, consumption_m3 FROM consumption_daily ORDER BY 1, 2"
            ).fetchall(),
        }


def _switch(url: str, old: int, new: int, new_reads: int) -> list[int]:
    """Meter M read every ``old`` seconds for 10 days up to :data:`SWITCH`, then every ``new``
    seconds, ``new_reads`` reads, a round 5 minutes after each: the estimates in the table after each."""
    _reset(url)
    old_step, new_step = timedelta(seconds=old), timedelta(seconds=new)
    _store(url, [SWITCH - k * old_step for k in range(int(timedelta(days=10) / old_step), -1, -1)])
    with psycopg.connect(url, autocommit=True) as conn:  # as the rounds of those days left it
        conn.execute("SELECT refresh_consumption(%s, %s)", (SWITCH - timedelta(days=11), SWITCH + HOUR))
    counts = []
    for k in range(1, new_reads + 1):
        t = SWITCH + k * new_step
        _store(url, [t])
        assert vee_round(url, t + timedelta(minutes=5)) is not None
        counts.append(_estimates(url))
    return counts


def test_a_meter_now_read_daily_keeps_no_hourly_estimates_once_its_daily_interval_takes_over(migrated_database_url):
    """The proof: hourly reads, then daily ones at 06:00. The first 3 daily steps are judged
    hourly, each a gap with 23 estimates (69); the 4th daily read makes them daily steps, no gaps:
    the round after it deleted none of them (69 for ever, billed and shown in NEM12 as estimated),
    now all, and consumption is what a refresh of the whole span gives."""
    url = migrated_database_url
    counts = _switch(url, 3600, 86400, 6)
    assert counts == [23, 46, 69, 0, 0, 0]
    with psycopg.connect(url) as conn:
        interval = conn.execute("SELECT read_interval_s FROM meters").fetchone()
        deleted = conn.execute(
            "SELECT count(*) FROM reading_history WHERE quality = 'estimated' AND superseded_by = 'vee:no-gap'"
        ).fetchone()
    assert interval == (86400,) and deleted == (69,)
    kept = _consumption(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT refresh_consumption(%s, %s)", (SWITCH - timedelta(days=12), SWITCH + timedelta(days=8)))
    assert kept == _consumption(url)
    assert not any(not_actual for *_, not_actual in kept["hourly"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(switch=st.sampled_from(SWITCHES), extra=st.integers(0, 2))
def test_after_four_steps_at_a_longer_interval_and_a_round_no_estimate_is_left(migrated_database_url, switch, extra):
    """Complete reads at one interval, then at a longer one: whatever the first steps at the new
    one got while judged at the old, the round after the 4th step at it (and every one after) leaves
    no estimate: no step is a gap."""
    old, new = switch
    counts = _switch(migrated_database_url, old, new, 4 + extra)
    assert counts[0] > 0  # (judged at the old interval, the first step was a gap)
    assert counts[3:] == [0] * (1 + extra)


def test_an_estimate_in_a_gap_stays(migrated_database_url):
    """A real gap at the new interval (a daily read missing) keeps its one estimate."""
    url = migrated_database_url
    _switch(url, 3600, 86400, 5)
    _store(url, [SWITCH + timedelta(days=7)])  # the 6th day's read is missing
    assert vee_round(url, SWITCH + timedelta(days=7, minutes=5)) is not None
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT ts, volume_m3 FROM readings WHERE quality = 'estimated'").fetchall()
    assert rows == [(SWITCH + timedelta(days=6), Decimal(_volume(SWITCH + timedelta(days=6))))]
