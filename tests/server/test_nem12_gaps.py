"""NEM12: the hour a gap's closing read ends, holding the whole gap's water, is not 'A'.

Before, a gap VEE did not estimate (it crossed a rollover) put all of its water, 0.11 m³ over 11
hours, into the one hour its closing read ended, flagged A (actual), after ten N hours: an MDM
substituting those hours would count the water twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from server.billing.nem12 import nem12_file

DAY = datetime(2026, 11, 2, tzinfo=UTC)


def installed_with_reads(
    conn: psycopg.Connection, meter_id: str, service_point: str, installed_at: datetime, reads: dict[datetime, Decimal]
) -> None:
    """A meter installed at its own service point at ``installed_at``, with these reads."""
    conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter_id,))
    conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s)", (service_point,))
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES (%s, %s, %s)",
        (service_point, meter_id, installed_at),
    )
    for ts, volume in reads.items():
        conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", (meter_id, ts, volume))


@pytest.mark.parametrize("missing", [range(2, 6), range(1, 24), range(2, 3)], ids=["4_reads", "23_reads", "1_read"])
def test_the_hour_closing_a_gap_not_estimated_is_substituted_and_says_since_when(migrated_database_url, missing):
    volumes = {h: Decimal("100.000") + Decimal("0.010") * h for h in range(25) if h not in missing}
    with psycopg.connect(migrated_database_url) as conn:
        installed_with_reads(conn, "G1", "SPG", DAY - timedelta(days=10),
                             {DAY + timedelta(hours=hour): volume for hour, volume in volumes.items()})  # fmt: skip
        conn.execute("SELECT refresh_consumption(%s, %s)", (DAY, DAY + timedelta(days=1)))
        conn.commit()
    with psycopg.connect(migrated_database_url, row_factory=dict_row) as conn:
        text = nem12_file(conn, DAY, DAY + timedelta(days=1))  # type: ignore[arg-type]  # a dict_row connection
    (day,) = [line.split(",") for line in text.splitlines() if line.startswith("300,")]
    runs = [line.split(",")[1:6] for line in text.splitlines() if line.startswith("400,")]
    first, last = missing[0], missing[-1] + 1  # the gap: from the read before to the read closing it
    closing_hour = [
        f"{last}",
        f"{last}",
        "S18",
        "0",
        f"accumulated since 2026-11-02T{first - 1:02d}:00Z; the hours before are null",
    ]
    expected = [[str(first), str(last - 1), "N", "", ""], closing_hour]
    if first > 1:
        expected.insert(0, ["1", str(first - 1), "A", "", ""])
    if last < 24:
        expected.append([str(last + 1), "24", "A", "", ""])
    assert runs == expected
    assert Decimal(day[2 + last - 1]) == Decimal("0.010") * (last - first + 1)  # the gap's water, once


def test_a_daily_meters_estimated_day_is_accumulated_and_says_it_was_estimated(migrated_database_url):
    """A daily meter's missing read, which VEE estimates as one read a day after the one before,
    holds a whole day's water in one hour like every read of that meter: S18 "accumulated since",
    and the description says it is VEE's estimate (the code said neither, or S18 without a word)."""
    from collector.vee.runner import run_vee

    first = datetime(2026, 10, 1, 6, tzinfo=UTC)
    missing = first + timedelta(days=20)
    daily = {first + timedelta(days=d): Decimal("100") + Decimal("0.400") * d for d in range(25)}
    with psycopg.connect(migrated_database_url) as conn:
        installed_with_reads(conn, "D1", "SPD", first - timedelta(days=30),
                             {ts: volume for ts, volume in daily.items() if ts != missing})  # fmt: skip
        now = first + timedelta(days=24, hours=1)
        run_vee(conn, missing - timedelta(days=1), now, now=now)
        conn.execute("SELECT refresh_consumption(%s, %s)", (first, now))
        conn.commit()
        (estimated,) = conn.execute("SELECT ts, quality_by FROM readings WHERE quality = 'estimated'").fetchall()
    assert estimated[0] == missing
    with psycopg.connect(migrated_database_url, row_factory=dict_row) as conn:
        text = nem12_file(conn, missing, missing + timedelta(hours=1))  # type: ignore[arg-type]
    runs = [line.split(",")[1:6] for line in text.splitlines() if line.startswith("400,")]
    estimate_hour = missing.hour  # the hour (in UTC, the test zone) the estimate closes is hour 6
    assert [estimate_hour, estimate_hour, "S18", "0",
            f"estimated ({estimated[1]}); accumulated since 2026-10-20T06:00Z; the hours before are null"] == [
        int(runs[1][0]), int(runs[1][1]), *runs[1][2:]]  # fmt: skip
