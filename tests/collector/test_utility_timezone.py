"""The utility's time zone: local hours and days of consumption, across a change of the clocks."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from typer.testing import CliRunner

from aquami.cli import app

LONDON = ZoneInfo("Europe/London")
# Hourly reads from Friday 27 March to Tuesday 31 March 2026: the clocks go forward on Sunday 29th
# at 01:00 UTC, so the local 29th is 23 hours long. Each hour uses (hour of the UTC day + 1) litres.
FIRST = datetime(2026, 3, 27, 0, tzinfo=UTC)
HOURS = 4 * 24


def _load(url: str) -> dict[datetime, Decimal]:
    """Store the reads; return the consumption each read closes, by read time."""
    volume = Decimal("100.000")
    closes: dict[datetime, Decimal] = {}
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered, dma) VALUES ('TZ1', true, 'DMA-T')")
        rows = []
        for h in range(HOURS + 1):
            ts = FIRST + timedelta(hours=h)
            if h:
                used = Decimal(ts.hour + 1) / 1000
                volume += used
                closes[ts] = used
            rows.append(("TZ1", ts, volume))
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return closes


def _local_days(closes: dict[datetime, Decimal], zone: ZoneInfo) -> dict[datetime, Decimal]:
    """Independently: a read closes the interval ending at it, which belongs to the local day of ts - 1 µs."""
    days: dict[datetime, Decimal] = defaultdict(Decimal)
    for ts, used in closes.items():
        local = (ts - timedelta(microseconds=1)).astimezone(zone)
        midnight = datetime(local.year, local.month, local.day, tzinfo=zone).astimezone(UTC)
        days[midnight] += used
    return dict(days)


def test_days_are_the_utility_s_local_days_across_a_clock_change(migrated_database_url: str) -> None:
    url = migrated_database_url
    closes = _load(url)
    runner = CliRunner()
    env = {"AQUAMI_DATABASE_URL": url}
    shown = runner.invoke(app, ["collector", "timezone"], env=env)
    assert shown.exit_code == 0 and '"UTC"' in shown.output
    result = runner.invoke(app, ["collector", "timezone", "Europe/London"], env=env)
    assert result.exit_code == 0, result.output
    with psycopg.connect(url) as conn:
        daily: dict[datetime, Decimal] = dict(
            conn.execute("SELECT day, consumption_m3 FROM consumption_daily WHERE meter_id = 'TZ1'").fetchall()
        )
        hours = conn.execute(
            "SELECT day, sum(intervals) FROM consumption_daily WHERE meter_id = 'TZ1' GROUP BY 1"
        ).fetchall()
        dma_daily: dict[datetime, Decimal] = dict(
            conn.execute("SELECT day, consumption_m3 FROM dma_consumption_daily").fetchall()
        )
    expected = _local_days(closes, LONDON)
    # The whole local days the reads touch are refreshed; the first and last are partial days.
    assert daily == expected
    assert dma_daily == expected
    # Local midnight in London: 00:00 UTC before the change, 23:00 UTC the day before after it.
    assert datetime(2026, 3, 29, 0, tzinfo=UTC) in daily and datetime(2026, 3, 29, 23, tzinfo=UTC) in daily
    intervals = {day: count for day, count in hours}
    assert intervals[datetime(2026, 3, 29, 0, tzinfo=UTC)] == 23  # the short day
    assert intervals[datetime(2026, 3, 28, 0, tzinfo=UTC)] == 24


def test_an_unknown_zone_is_refused_and_changes_nothing(migrated_database_url: str) -> None:
    url = migrated_database_url
    _load(url)
    env = {"AQUAMI_DATABASE_URL": url}
    runner = CliRunner()
    assert runner.invoke(app, ["collector", "timezone", "Australia/Sydney"], env=env).exit_code == 0
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT day, consumption_m3 FROM consumption_daily ORDER BY 1").fetchall()
    bad = runner.invoke(app, ["collector", "timezone", "Mars/Olympus_Mons"], env=env)
    assert bad.exit_code == 2 and "unknown time zone" in bad.output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT utility_timezone()").fetchone() == ("Australia/Sydney",)
        assert conn.execute("SELECT day, consumption_m3 FROM consumption_daily ORDER BY 1").fetchall() == before
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT set_utility_timezone('not a zone')")
    assert before and before[0][0] == datetime(2026, 3, 26, 13, tzinfo=UTC)  # midnight in Sydney (AEDT, +11)


def test_back_to_utc_gives_utc_days(migrated_database_url: str) -> None:
    url = migrated_database_url
    closes = _load(url)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_utility_timezone('America/New_York')")
        conn.execute("SELECT set_utility_timezone('UTC')")
        daily: dict[datetime, Decimal] = dict(
            conn.execute("SELECT day, consumption_m3 FROM consumption_daily").fetchall()
        )
    assert daily == _local_days(closes, ZoneInfo("UTC"))
