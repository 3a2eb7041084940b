"""A meter's chart says the utility's day still running is its water so far: a paler bar, "so far" in
its title, the table and the chart's heading. Before, today's few hours ended the chart as a day like
the others, a day of almost no water (the demo's WM-00003, leaking 25 L/h: 0.87 m³ yesterday, a sliver
today)."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters
from server.web.daily_chart import chart

ZONE = "Pacific/Kiritimati"  # UTC+14: its day is another date than UTC's for 14 hours of each


@pytest.fixture
def page(migrated_database_url: str) -> Iterator[tuple[str, date]]:
    """M1's page, read hourly from the local midnight two days ago to half past today's; and today."""
    zone = ZoneInfo(ZONE)
    today = datetime.now(zone).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SELECT set_utility_timezone(%s)", (ZONE,))
        key = create_api_key(conn, "care", ["customer_care"])
        register_meters(conn, [("M1", "D1", "customer")])
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")  # as ingest does
        times = [midnight - timedelta(hours=48 - h) for h in range(49)] + [midnight + timedelta(minutes=30)]
        for n, ts in enumerate(times):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, quality) VALUES ('M1', %s, %s, 'actual')",
                (ts, Decimal("100") + Decimal(n) * Decimal("0.025")),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (times[0], times[-1] + timedelta(hours=1)))
        with TestClient(create_app(migrated_database_url)) as client:
            answer = client.get("/care/meters/M1", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200
            yield answer.text, today


def test_today_is_said_so_far_and_the_days_before_are_not(page) -> None:
    text, today = page
    yesterday = today - timedelta(days=1)
    assert f"days to {today.isoformat()} (today, so far), the utility's days ({ZONE})" in text
    assert f'<tr class="actual"><td>{today.isoformat()} <span class="badge" title="the day is not over' in text
    assert f'<tr class="actual"><td>{yesterday.isoformat()}</td>' in text
    assert f"<title>{today.isoformat()}: 0.025 m³ so far (the day is not over)</title>" in text
    assert f"<title>{yesterday.isoformat()}: 0.600 m³</title>" in text
    assert text.count('class="actual partial"') == 1 and "today, so far</p>" in text


def _row(day: date) -> dict[str, Any]:
    return {
        "date": day,
        "consumption_m3": Decimal("1"),
        "intervals": 24,
        "not_actual": 0,
        "unknown": 0,
        "qualities": {},
    }


def test_only_days_from_today_on_are_partial_and_none_without_a_today() -> None:
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(5)]
    drawn = chart([_row(d) for d in days], today=days[3])
    assert drawn is not None and [d.partial for d in drawn.days] == [False, False, False, True, True]
    undated = chart([_row(d) for d in days])
    assert undated is not None and not any(d.partial for d in undated.days)


@pytest.fixture
def python_without_system_zones() -> Iterator[None]:
    """This Python as one without the system's zone files (Windows, a slim container): ZoneInfo reads
    only the tzdata package, which has no ``posixrules``; PostgreSQL's pg_timezone_names has it."""
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        yield
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


def test_a_zone_postgresql_knows_and_python_does_not_still_shows_the_page(
    migrated_database_url: str, python_without_system_zones: None
) -> None:
    """set_utility_timezone takes any name in pg_timezone_names; the page's today was Python's
    ZoneInfo(name), a ZoneInfoNotFoundError and a 500 for a name Python's data lacks. Now PostgreSQL,
    whose calendar made the days, says the day."""
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        zoneinfo.ZoneInfo("posixrules")  # the condition the page met
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("SELECT set_utility_timezone('posixrules')")  # New York's rules, by another name
        key = create_api_key(conn, "care", ["customer_care"])
        register_meters(conn, [("M1", "D1", "customer")])
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")
        now = datetime.now(ZoneInfo("UTC"))
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality) VALUES ('M1', %s, 100, 'actual'), "
            "('M1', %s, 100.5, 'actual')",
            (now - timedelta(days=2), now - timedelta(minutes=1)),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (now - timedelta(days=3), now))
        row = conn.execute("SELECT (now() AT TIME ZONE 'posixrules')::date").fetchone()
        assert row is not None
        with TestClient(create_app(migrated_database_url), raise_server_exceptions=False) as client:
            answer = client.get("/care/meters/M1", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert f"days to {row[0].isoformat()} (today, so far), the utility's days (posixrules)" in answer.text
