"""NEM12's query takes the utility's zone as a parameter, read once, not utility_timezone() per row.

Before, the hours' qualities called utility_timezone() (a query of utility_settings) once per row:
the same rows 2-3x slower on a utility's month (review proof nem12_tz.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from server.billing import nem12
from server.billing.repository import utility_timezone

DAY = datetime(2026, 11, 2, tzinfo=UTC)
LOCAL_DAY = DAY - timedelta(hours=10)  # 2 November in Brisbane (UTC+10, no summer time)


def test_the_query_reads_the_zone_once_and_its_hours_are_the_zone_s(migrated_database_url):
    with psycopg.connect(migrated_database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT set_utility_timezone('Australia/Brisbane')")  # UTC+10, no summer time
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('Z1', true)")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SPZ')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SPZ', 'Z1', %s)",
            (DAY - timedelta(days=10),),
        )
        for h in range(-12, 40):
            if h in (-4, -3):  # 06:00 and 07:00 local missing: the hour to 08:00 holds the gap's water
                continue
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('Z1', %s, %s)",
                (DAY + timedelta(hours=h), Decimal("100") + Decimal("0.01") * (h + 12)),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (DAY - timedelta(days=1), DAY + timedelta(days=2)))
        zone = utility_timezone(conn)  # type: ignore[arg-type]
        export = nem12.prepare(conn, LOCAL_DAY, LOCAL_DAY + timedelta(days=1), zone=zone)  # type: ignore[arg-type]
        plan = "\n".join(
            r["QUERY PLAN"] for r in conn.execute("EXPLAIN (VERBOSE) " + nem12._HOURLY, nem12._params(export))
        )
        text = nem12.nem12_file(conn, LOCAL_DAY, LOCAL_DAY + timedelta(days=1), zone=zone)  # type: ignore[arg-type]
    assert "utility_timezone" not in plan and "Australia/Brisbane" in plan
    (day,) = [line for line in text.splitlines() if line.startswith("300,")]
    assert day.startswith("300,20261102,")
    runs = [line.split(",")[1:5] for line in text.splitlines() if line.startswith("400,")]
    assert runs == [["1", "5", "A", ""], ["6", "7", "N", ""], ["8", "8", "S18", "0"], ["9", "24", "A", ""]]
