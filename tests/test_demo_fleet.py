"""The demo's fleet is built around the first run's hour, so a later run on the same database reads
the same registers: built around its own hour, they read less than the stored ones, going back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from aquami.demo import HISTORY_DAYS, demo_fleet, fleet_epoch, register_customers
from collector.detection_job import grid_end


def test_a_second_demo_run_on_the_same_database_builds_the_same_meters(migrated_database_url):
    first_run = datetime(2026, 12, 1, 9, 41, tzinfo=UTC)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        epoch = fleet_epoch(conn, first_run)
        assert epoch == grid_end(first_run, timedelta(hours=1))
        fleet = demo_fleet(5, 7, epoch)
        conn.execute("INSERT INTO meters (meter_id) SELECT unnest(%s::text[])", ([m.meter_id for m in fleet],))
        register_customers(conn, fleet, epoch - timedelta(days=HISTORY_DAYS))
        second_run = first_run + timedelta(days=3, minutes=17)
        again = fleet_epoch(conn, second_run)
    assert again == epoch
    rebuilt = demo_fleet(5, 7, again)
    moment = second_run - timedelta(hours=1)
    for before, after in zip(fleet, rebuilt, strict=True):
        assert after.meter.read(moment).volume_m3 == before.meter.read(moment).volume_m3
    # (built around the second run's own hour, the first meter's register read less at that moment)
    assert demo_fleet(5, 7, second_run)[0].meter.read(moment).volume_m3 < fleet[0].meter.read(moment).volume_m3
