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


def _exchanged(
    url: str, swap: datetime, cards: bool = False
) -> tuple[dict[datetime, Decimal], dict[datetime, Decimal]]:
    """OLD read hourly on the hour, its last read 10 minutes before the swap; NEW fitted at the swap,
    read 5 minutes after it and then hourly on the hour. Both registers grow at a steady rate. With
    ``cards``, the job cards record both registers at the swap."""
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
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at, "
            "final_register_m3, initial_register_m3) VALUES "
            "('SPX', 'OLD', %(a)s, %(s)s, %(final)s, NULL), ('SPX', 'NEW', %(s)s, NULL, NULL, %(initial)s)",
            {
                "a": start - timedelta(days=30),
                "s": swap,
                "final": Decimal("500") + OLD_RATE * _minutes(start, swap) if cards else None,
                "initial": Decimal("1") if cards else None,
            },
        )
        for meter, reads in (("OLD", old), ("NEW", new)):
            for ts, volume in reads.items():
                conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", (meter, ts, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (start, TO + timedelta(days=1)))
        conn.commit()
    return old, new


def _hours(blocks: list[tuple[list[str], list[list[str]]]]) -> dict[datetime, Decimal]:
    return {
        datetime.strptime(day[1], "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=h): Decimal(day[2 + h])
        for _, records in blocks
        for day in records
        for h in range(24)
    }


def _expected(*meters: dict[datetime, Decimal]) -> dict[datetime, Decimal]:
    """Every interval between two reads of a meter, closing in the file's days, once in its hour."""
    expected: dict[datetime, Decimal] = {}
    for reads in meters:
        stamps = sorted(reads)
        for before, closing in pairwise(stamps):
            hour = (closing - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
            if FROM <= hour < TO:
                expected[hour] = expected.get(hour, Decimal(0)) + reads[closing] - reads[before]
    return expected


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
    hours = _hours(blocks)
    assert hours == {**dict.fromkeys(hours, Decimal(0)), **_expected(old, new)}
    if swap.minute:  # the hour it was exchanged in: the old meter's 20 minutes read and the new one's 25
        assert hours[swap.replace(minute=0)] == OLD_RATE * 20 + NEW_RATE * 25


@pytest.mark.parametrize(
    "swap", [DAY + timedelta(hours=10, minutes=30), DAY + timedelta(hours=23, minutes=30)], ids=["10:30", "23:30"]
)
def test_the_job_cards_water_is_in_the_exchange_s_hour_substituted(migrated_database_url: str, swap: datetime) -> None:
    """The water between OLD's last read and its removal, and between NEW's fitting and its first read,
    which only the job cards' registers measure, is in the exchange's hour, flagged S18 (before, in no
    hour: the 10:30 exchange's hour held 0.007 m³ of its 0.009, the determinant billing all of it)."""
    old, new = _exchanged(migrated_database_url, swap, cards=True)
    with psycopg.connect(migrated_database_url) as conn:
        text = nem12_file(conn, FROM, TO)
    hours = _hours(_blocks(text))
    final = Decimal("500") + OLD_RATE * _minutes(FROM - timedelta(days=1), swap)
    assert hours == {**dict.fromkeys(hours, Decimal(0)), **_expected({**old, swap: final}, {**new, swap: Decimal(1)})}
    assert hours[swap.replace(minute=0)] == (OLD_RATE + NEW_RATE) * 30  # both meters' half hours, whole
    # all the water of the file's three days: the registers' differences from its start to its end
    assert sum(hours.values()) == (final - old[FROM]) + (new[TO] - 1)
    (run,) = [line.split(",") for line in text.splitlines() if line.startswith("400,") and ",S18," in line]
    hour = str(swap.hour + 1)
    assert run == ["400", hour, hour, "S18", "0", "the removal job card's register"]
