"""NEM12: every meter whose water a file carries is named in it.

A service point's day is one 300 record, under the meter fitted last that day. A meter fitted and
removed within a day another meter was fitted on (A out at 08:00, SHORT in 08:00-12:00, B in at
12:00), or one removed on the file's first day, has no day of its own and so no 200 record. Before,
its water was in the day's record under B's serial and nothing in the file named it. Now each hour
holding its water names it in its ReasonDescription (ReasonCode 0), and the values are unchanged: the
file's water is still every meter's register difference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from server.billing.nem12 import nem12_file

DAY = datetime(2026, 11, 2, tzinfo=UTC)
IN_SHORT, OUT_SHORT = DAY + timedelta(hours=8), DAY + timedelta(hours=12)
RATE = Decimal("0.010")  # m³ an hour, every meter


def _fitted(url: str) -> dict[str, dict[datetime, Decimal]]:
    """A until 08:00, SHORT 08:00-12:00, B from 12:00, each read hourly on the hour while fitted."""
    spans = {"A": (DAY - timedelta(days=40), IN_SHORT), "SHORT": (IN_SHORT, OUT_SHORT), "B": (OUT_SHORT, None)}
    reads: dict[str, dict[datetime, Decimal]] = {}
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SPS')")
        for meter, (start, end) in spans.items():
            conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter,))
            conn.execute(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
                "VALUES ('SPS', %s, %s, %s)",
                (meter, start, end),
            )
            first = max(start, DAY - timedelta(days=2))
            last = end or DAY + timedelta(days=3)
            reads[meter] = {
                first + timedelta(hours=h): Decimal(100) + RATE * h
                for h in range(int((last - first).total_seconds()) // 3600 + 1)
            }
            for ts, volume in reads[meter].items():
                conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", (meter, ts, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (DAY - timedelta(days=3), DAY + timedelta(days=4)))
    return reads


def _records(text: str) -> list[list[str]]:
    return [line.split(",") for line in text.splitlines()]


@pytest.mark.parametrize("first_day", [DAY - timedelta(days=1), DAY], ids=["day-before", "exchange-day-first"])
def test_each_hour_holding_a_meter_without_a_200_record_names_it(
    migrated_database_url: str, first_day: datetime
) -> None:
    reads = _fitted(migrated_database_url)
    with psycopg.connect(migrated_database_url) as conn:
        text = nem12_file(conn, first_day, DAY + timedelta(days=2))
    records = _records(text)
    serials = [r[6] for r in records if r[0] == "200"]
    assert serials == (["A", "B"] if first_day < DAY else ["B"])
    days = [r[1] for r in records if r[0] == "300"]
    assert len(days) == len(set(days))  # still one 300 record per NMI, suffix and day
    (exchange_day,) = [r for r in records if r[0] == "300" and r[1] == f"{DAY:%Y%m%d}"]
    runs = [r for r in records if r[0] == "400"]
    named = {
        hour: run[5] for run in runs for hour in range(int(run[1]) - 1, int(run[2]))
    }  # hour of the day → description
    assert exchange_day[26] == "V"
    for hour in range(24):
        closing = DAY + timedelta(hours=hour + 1)
        holds = {m for m in ("A", "SHORT") if closing in reads[m] and closing - timedelta(hours=1) in reads[m]}
        undeclared = sorted(holds - set(serials))
        if undeclared:
            assert named[hour] == (
                f"with the water of meter {' and meter '.join(undeclared)} (no 200 record of its own in this file)"
            )
        else:
            assert named[hour] == ""
    # the values are what they were: every hour's water, the registers' differences, whatever meter
    values = [Decimal(v) for v in exchange_day[2:26]]
    assert values == [RATE] * 24
    assert "SHORT" in text
