"""NEM12: a meter exchanged at a service point gives its NMI one 300 record per day, the exchange day
the new meter's, each hour's water in it once.

Before, each meter was a 200 record of its own with a 300 record for every day its installation
touched: the exchange day twice for the one NMI and suffix, the old meter's with its hours after the
exchange null (0) and the new meter's with its hours before null, so an MDM keeping the later record
for an NMI, suffix and day lost the other meter's water (0.26 m³ of a day's 0.37 m³ with the meters
ordered by id). And the new meter's water of the hour it was fitted in (fitted 10:30, read 10:35 and
11:00) was in neither record: a meter's hours began with the first whole hour of its installation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import psycopg
import pytest

from server.billing.nem12 import nem12_file

DAY = datetime(2026, 11, 2, tzinfo=UTC)
FROM, TO = DAY - timedelta(days=1), DAY + timedelta(days=2)  # the file's three days
OLD_RATE, NEW_RATE = Decimal("0.0001"), Decimal("0.0002")  # m³ a minute: 0.006 and 0.012 m³ an hour


def _minutes(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds()) // 60


def _exchanged(url: str, swap: datetime) -> tuple[dict[datetime, Decimal], dict[datetime, Decimal]]:
    """OLD read hourly on the hour, its last read 10 minutes before the swap; NEW fitted at the swap,
    read 5 minutes after it and then hourly on the hour. Both registers grow at a steady rate."""
    start = FROM - timedelta(days=1)
    old = {start + timedelta(hours=h): Decimal("500") + OLD_RATE * 60 * h for h in range(24 * 5)}
    old = {ts: v for ts, v in old.items() if ts < swap - timedelta(minutes=10)}
    last = swap - timedelta(minutes=10)
    old[last] = Decimal("500") + OLD_RATE * _minutes(start, last)
    first = swap + timedelta(minutes=5)
    new = {first: Decimal("1") + NEW_RATE * 5}
    ts = swap.replace(minute=0) + timedelta(hours=1)
    while ts <= TO + timedelta(hours=2):
        new[ts] = Decimal("1") + NEW_RATE * _minutes(swap, ts)
        ts += timedelta(hours=1)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('OLD', true), ('NEW', true)")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SPX')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) VALUES "
            "('SPX', 'OLD', %(a)s, %(s)s), ('SPX', 'NEW', %(s)s, NULL)",
            {"a": start - timedelta(days=30), "s": swap},
        )
        for meter, reads in (("OLD", old), ("NEW", new)):
            for ts, volume in reads.items():
                conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", (meter, ts, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (start, TO + timedelta(days=1)))
        conn.commit()
    return old, new


def _blocks(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each 200 record with its 300 records."""
    blocks: list[tuple[list[str], list[list[str]]]] = []
    for fields in (line.split(",") for line in text.splitlines()):
        if fields[0] == "200":
            blocks.append((fields, []))
        elif fields[0] == "300":
            blocks[-1][1].append(fields)
    return blocks


@pytest.mark.parametrize(
    "swap",
    [DAY + timedelta(hours=10, minutes=30), DAY, DAY + timedelta(hours=23, minutes=30)],
    ids=["10:30", "midnight", "23:30"],
)
def test_an_exchange_day_is_one_300_record_of_the_new_meter_with_each_hours_water_once(
    migrated_database_url: str, swap: datetime
) -> None:
    old, new = _exchanged(migrated_database_url, swap)
    with psycopg.connect(migrated_database_url) as conn:
        text = nem12_file(conn, FROM, TO)
    blocks = _blocks(text)
    days = [(block[1], block[4], day[1]) for block, records in blocks for day in records]
    assert len(days) == len(set(days)) == 3  # one 300 record per NMI, suffix and day
    serial = {day[1]: block[6] for block, records in blocks for day in records}
    assert serial == {
        f"{d:%Y%m%d}": "OLD" if d + timedelta(days=1) <= swap else "NEW" for d in (FROM, DAY, DAY + timedelta(days=1))
    }  # the new meter's on and from the day it was fitted
    assert [block[6] for block, _ in blocks] == ["OLD", "NEW"]  # in the order they were fitted
    hours = {
        datetime.strptime(day[1], "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=h): Decimal(day[2 + h])
        for _, records in blocks
        for day in records
        for h in range(24)
    }
    # every interval between two reads of a meter, closing in the file's days, counted once in its hour
    expected = dict.fromkeys(hours, Decimal(0))
    for reads in (old, new):
        stamps = sorted(reads)
        for before, closing in pairwise(stamps):
            hour = (closing - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
            if FROM <= hour < TO:
                expected[hour] += reads[closing] - reads[before]
    assert hours == expected
    if swap.minute:  # the hour it was exchanged in: the old meter's 20 minutes read and the new one's 25
        assert hours[swap.replace(minute=0)] == OLD_RATE * 20 + NEW_RATE * 25
