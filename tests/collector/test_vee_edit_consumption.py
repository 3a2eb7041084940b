"""A person's edit or substitution refreshes the consumption of the days it touches, in its own
transaction, however old the read.

Before, NEM12 marked the edited hour F16 at once (its flag comes from the reads) but showed the
value from before the edit until the next VEE round, and for reads older than a round's reach
(35 days) for good: a read corrected from 102.520 to 102.600 m³ kept its hour at 0.01 m³, not 0.09.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.vee.editing import edit_reading, substitute_reading

T0 = datetime(2025, 3, 10, tzinfo=UTC)  # long before any round's reach: only the edit refreshes it


def _hour(conn: psycopg.Connection, hour: datetime) -> Decimal | None:
    row = conn.execute(
        "SELECT consumption_m3 FROM consumption_hourly WHERE meter_id = 'M' AND hour = %s", (hour,)
    ).fetchone()
    return None if row is None else row[0]


def _day(conn: psycopg.Connection, day: datetime) -> Decimal:
    row = conn.execute("SELECT consumption_m3 FROM consumption_daily WHERE meter_id = 'M' AND day = %s", (day,))
    return row.fetchone()[0]  # type: ignore[index]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(1, 46), litres=st.integers(0, 9))
def test_an_edit_shows_in_the_hourly_and_daily_consumption_in_its_own_transaction(migrated_database_url, at, litres):
    """Two days of hourly reads at 10 L an hour; the read ``at`` hours in is edited up by
    ``litres``: the hour it closes gains them and the next hour loses them, at once, and a rollback
    of the edit's transaction takes the refresh back too."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM readings; DELETE FROM meters; DELETE FROM consumption_hourly")
        conn.execute("DELETE FROM consumption_daily; DELETE FROM late_readings")
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) "
            "SELECT 'M', %s + h * interval '1 hour', 100 + 0.01 * h FROM generate_series(0, 48) h",
            (T0,),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=2)))
    ts = T0 + timedelta(hours=at)
    extra = Decimal(litres) / 1000
    with psycopg.connect(migrated_database_url) as conn:
        edit_reading(conn, "M", ts, Decimal("100") + Decimal("0.01") * at + extra, by="Ann", reason="photo")
        assert _hour(conn, ts - timedelta(hours=1)) == Decimal("0.01") + extra
        assert _hour(conn, ts) == Decimal("0.01") - extra
        assert _day(conn, T0) + _day(conn, T0 + timedelta(days=1)) == Decimal("0.48")
        conn.rollback()
        assert _hour(conn, ts - timedelta(hours=1)) == Decimal("0.01")


def test_a_substitution_in_a_gap_splits_the_gap_s_water_at_once(migrated_database_url):
    """Reads at 00:00 and 06:00 only: the 60 L were all in the 05:00 hour; a read supplied at 03:00
    (40 L in) puts 40 L in the 02:00 hour and 20 L in the 05:00 hour."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M', %s, 100), ('M', %s, 100.06)",
            (T0, T0 + timedelta(hours=6)),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=1)))
        assert _hour(conn, T0 + timedelta(hours=5)) == Decimal("0.06")
    with psycopg.connect(migrated_database_url) as conn:
        substitute_reading(conn, "M", T0 + timedelta(hours=3), Decimal("100.04"), by="Ann", reason="site visit")
        conn.commit()
        assert (_hour(conn, T0 + timedelta(hours=2)), _hour(conn, T0 + timedelta(hours=5))) == (
            Decimal("0.04"),
            Decimal("0.02"),
        )


@pytest.mark.timeout(60)
def test_two_edits_of_one_day_on_two_meters_take_turns_and_both_land(migrated_database_url):
    """Each refresh deletes and inserts whole days of every meter: the second of two overlapping
    edits (another meter, the same day) hit the first's rows, "duplicate key value violates unique
    constraint consumption_hourly_pkey", and the person's correction was lost to a 500."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM readings; DELETE FROM meters; DELETE FROM consumption_hourly")
        conn.execute("DELETE FROM consumption_daily; DELETE FROM late_readings")
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true), ('N', true)")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) SELECT m, %s + h * interval '1 hour', 100 + 0.01 * h "
            "FROM generate_series(0, 24) h, unnest(ARRAY['M', 'N']) m",
            (T0,),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=1)))
    outcome: dict[str, str] = {}
    with psycopg.connect(migrated_database_url) as first, psycopg.connect(migrated_database_url) as second:
        edit_reading(first, "M", T0 + timedelta(hours=5), Decimal("100.055"), by="Ann", reason="photo")

        def edit_n() -> None:
            try:
                edit_reading(second, "N", T0 + timedelta(hours=7), Decimal("100.075"), by="Bob", reason="photo")
                second.commit()
                outcome["N"] = "committed"
            except psycopg.Error as error:
                outcome["N"] = f"{type(error).__name__}: {error}"

        thread = threading.Thread(target=edit_n)
        thread.start()
        time.sleep(0.5)  # Bob's edit waits for Ann's to end
        first.commit()
        thread.join(20)
    assert outcome == {"N": "committed"}
    with psycopg.connect(migrated_database_url) as conn:
        hours: dict[str, Decimal] = dict(
            conn.execute(
                "SELECT meter_id || '@' || extract(hour FROM hour AT TIME ZONE 'UTC'), consumption_m3 "
                "FROM consumption_hourly WHERE (meter_id, hour) IN (('M', %s), ('N', %s))",
                (T0 + timedelta(hours=4), T0 + timedelta(hours=6)),
            ).fetchall()
        )
    assert hours == {"M@4": Decimal("0.015"), "N@6": Decimal("0.015")}
