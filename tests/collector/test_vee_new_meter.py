"""A new meter's first steps, before VEE knows its read interval, are judged at the interval it
turns out to have: no estimate is made at a guessed one (``expected_interval_s``, hourly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from collector.vee.rounds import vee_round

FIRST = datetime(2026, 11, 2, 6, tzinfo=UTC)  # the new meter's first read
DAY = timedelta(days=1)


def _store(url: str, meter: str, times: list[datetime]) -> None:
    """Reads of ``meter`` (10 L an hour), each received at its own time."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true) ON CONFLICT DO NOTHING", (meter,))
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as cp:
            for t in times:
                cp.write_row((meter, t, f"{1 + (t - FIRST).total_seconds() / 3600 * 0.010:.3f}", t))


def _estimates(url: str) -> list[datetime]:
    with psycopg.connect(url) as conn:
        return [t for (t,) in conn.execute("SELECT ts FROM readings WHERE quality = 'estimated' ORDER BY ts")]


def _gaps(url: str) -> list[tuple[datetime, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT ts, detail FROM vee_flags WHERE rule = 'gap' ORDER BY ts").fetchall()


def _interval(url: str, meter: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT read_interval_s FROM meters WHERE meter_id = %s", (meter,)).fetchone()
    assert row is not None
    return row[0]


def test_a_new_daily_meter_gets_no_hourly_estimates_while_its_interval_is_unknown(migrated_database_url):
    """A new meter read daily at 06:00, a round 5 minutes after each read. Before, its 2nd and 3rd
    reads were judged at the configured hour, each a gap with 23 hourly estimates (the estimates
    after each round: 0, 23, 46, 0, 0, 0), billed and pulled as estimated until the 4th read made
    the meter daily and a round deleted them; now none, no gap flag, and the meter is daily from
    its 4th read (3 steps) on."""
    url = migrated_database_url
    counts, intervals = [], []
    for k in range(6):
        _store(url, "NEW", [FIRST + k * DAY])
        assert vee_round(url, FIRST + k * DAY + timedelta(minutes=5)) is not None
        counts.append(len(_estimates(url)))
        intervals.append(_interval(url, "NEW"))
    assert counts == [0] * 6
    assert _gaps(url) == []
    assert intervals == [None, None, None, 86400, 86400, 86400]


def test_a_new_daily_meter_s_missing_day_is_one_estimate_at_its_reading_hour(migrated_database_url):
    """A new meter read daily at 06:00, its second read missing, a round 5 minutes after each read.
    Before, the round after its 2nd read (1 step: its interval unknown) judged the missing day at
    the configured hour: 47 hourly estimates (0, 47, 70, 25, 25, 25 after each round), and as the
    2-day step is a gap at the daily interval too, 25 of them stayed for good, with no gap flag.
    Now the gap waits until the meter's interval is known (its 4th read, 3 steps), and that round
    estimates it, one estimate at 06:00, and flags it, though it closed before the round's two
    days."""
    url = migrated_database_url
    found = []
    for k in (0, 2, 3, 4, 5, 6):
        _store(url, "NEW", [FIRST + k * DAY])
        assert vee_round(url, FIRST + k * DAY + timedelta(minutes=5)) is not None
        found.append(_estimates(url))
    assert found == [[]] * 3 + [[FIRST + DAY]] * 3
    assert [(t, detail.endswith("; estimated")) for t, detail in _gaps(url)] == [(FIRST + 2 * DAY, True)]


def test_a_daily_meter_back_after_a_long_silence_keeps_the_interval_vee_found(migrated_database_url):
    """A daily meter read for 10 days, silent for 40, then read again: its gap, with one step in the
    round's 28 days and the read before them, is estimated daily, not hourly."""
    url = migrated_database_url
    for k in range(10):
        _store(url, "OLD", [FIRST + k * DAY])
    assert vee_round(url, FIRST + 9 * DAY + timedelta(minutes=5)) is not None
    back = FIRST + 49 * DAY
    _store(url, "OLD", [back])
    assert vee_round(url, back + timedelta(minutes=5)) is not None
    assert _estimates(url) == [FIRST + k * DAY for k in range(10, 49)]
