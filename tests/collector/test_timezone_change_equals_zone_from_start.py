"""A change of the utility's time zone (``aquami collector timezone``, ``set_utility_timezone``, collector
migrations 0020 and 0077) leaves the consumption tables as they would be had the zone been set before
the first read arrived: the same rows of consumption_hourly, consumption_daily, dma_consumption_hourly
(and so of the view dma_consumption_daily), to the last row and count.

Two databases get the same reads of the same fleet (customers of two DMAs, an inlet, a meter in no DMA;
reads every 15 to 90 minutes, off the hour, with gaps, one meter's reads a day late) and the same job
cards (a meter fitted, removed and fitted again elsewhere, keyed in the day after), refreshed as the
collector does: a VEE round's refresh every few hours over its window, reaching back to the oldest
read that arrived since (``collector.vee.rounds``), and a job card's own refresh (server migration
0082). One has the zone set before any read; the other is in another zone (UTC, the default) until
the reads are in, then changed. The reads straddle local midnights east and west of UTC, half-hour
offsets (Kolkata +05:30, St John's −03:30 and −02:30) and changes of the clocks (Auckland's and Los
Angeles's daylight saving time ending; St John's too).

A change A → B and back to A leaves what A had before the change.

Readings can be gone while the consumption they gave stays (old chunks dropped by hand, ``drop_chunks``):
the change deleted that consumption and could not compute it again, silently. It is refused now,
everything left as it was, until the readings are restored or that consumption is given up (collector
migration 0078); then it gives what the zone from the start gives over the readings left.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from tests.server_session import as_the_server
from tests.services import create_database, drop_database

#: (meter, DMA, role): two DMAs, an inlet (not counted in its DMA's customers), a meter in no DMA.
METERS = (
    ("C1", "DMA-N", "customer"),
    ("C2", "DMA-N", "customer"),
    ("IN", "DMA-N", "inlet"),
    ("C3", "DMA-S", "customer"),
    ("LONE", None, "customer"),
)
#: The meter fitted, removed and fitted again (at another service point), its reads going on throughout.
REFITTED = "C3"
#: The meter whose reads arrive a day late (a gateway's spool after an outage).
LATE = "C2"

#: Where the reads begin, for each zone: a day or two before a change of its clocks, where it has one.
ANCHORS = {
    "UTC": datetime(2026, 4, 3, tzinfo=UTC),
    "Asia/Kolkata": datetime(2026, 4, 3, tzinfo=UTC),
    "Asia/Tokyo": datetime(2026, 4, 3, tzinfo=UTC),
    "Pacific/Auckland": datetime(2026, 4, 3, tzinfo=UTC),  # NZDT → NZST on 4 April, 14:00 UTC
    "America/St_Johns": datetime(2026, 10, 30, tzinfo=UTC),  # NDT → NST on 1 November, 04:30 UTC
    "America/Los_Angeles": datetime(2026, 10, 30, tzinfo=UTC),  # PDT → PST on 1 November, 09:00 UTC
}
ZONES = tuple(ANCHORS)
TABLES = {
    "consumption_hourly": "SELECT meter_id, hour, consumption_m3, intervals, not_actual, unknown "
    "FROM consumption_hourly ORDER BY 1, 2",
    "consumption_daily": "SELECT meter_id, day, consumption_m3, intervals, not_actual, unknown "
    "FROM consumption_daily ORDER BY 1, 2",
    "dma_consumption_hourly": "SELECT dma, hour, consumption_m3, meters, not_actual, unknown "
    "FROM dma_consumption_hourly ORDER BY 1, 2",
    "dma_consumption_daily": "SELECT dma, day, consumption_m3, meters, not_actual, unknown "
    "FROM dma_consumption_daily ORDER BY 1, 2",
}
Tables = dict[str, list[tuple[Any, ...]]]


#: A read: meter, instant, register, quality, when it reaches the database.
Read = tuple[str, datetime, Decimal, str, datetime]
#: A step of the register VEE explained: meter, the read after it, kind, its interval's consumption.
Step = tuple[str, datetime, str, Decimal | None]


@dataclass(frozen=True)
class Fleet:
    """The reads, the register's steps VEE explained (recorded as the read after them arrives), the job
    cards and when they are keyed, and how often a round runs."""

    reads: list[Read]
    steps: list[Step]
    installations: list[tuple[str, str, datetime, datetime | None]]  # meter, service point, fitted, removed
    cards_keyed_at: datetime
    round_every: timedelta


def build_fleet(rng: random.Random, anchor: datetime) -> Fleet:
    """A fleet's reads over about three days from near ``anchor``, each meter its own rhythm."""
    start = anchor + timedelta(hours=rng.randrange(0, 36), minutes=rng.choice([0, 30]))
    reads: list[Read] = []
    steps: list[Step] = []
    for meter, _, _ in METERS:
        step = timedelta(minutes=rng.choice([15, 30, 60, 90]))
        ts = start + timedelta(minutes=rng.choice([0, 0, 30, 7, 45]), seconds=rng.choice([0, 0, 13]))
        volume = Decimal(rng.randrange(0, 500_000)) / 1000
        delay = timedelta(days=1) if meter == LATE else timedelta(minutes=1)
        end = start + timedelta(hours=rng.randrange(48, 80))
        while ts <= end:
            if rng.random() < 0.85:  # the rest are gaps
                quality = "actual" if rng.random() < 0.9 else rng.choice(["estimated", "edited"])
                reads.append((meter, ts, volume, quality, ts + delay))
            ts += step if rng.random() < 0.9 else step * rng.randrange(3, 12)
            if rng.random() < 0.04 and volume > 1:  # the register steps back: unknown, or explained
                volume -= Decimal(rng.randrange(1, 1000)) / 1000
                explained = rng.choice([None, ("rollover", Decimal("0.017")), ("unexplained", None)])
                if explained is not None:
                    steps.append((meter, ts, explained[0], explained[1]))
            else:
                volume += Decimal(rng.randrange(0, 60)) / 1000
    refitted = sorted(r[1] for r in reads if r[0] == REFITTED)
    refit_first = refitted[0]
    bad = refitted[len(refitted) // 3]  # a glitch read, as VEE records one (collector migration 0057)
    after = next(iter(t for t in refitted if t > bad), None)
    steps = [s for s in steps if s[0] != REFITTED or s[1] not in (bad, after)]
    steps.append((REFITTED, bad, "bad_read", Decimal(0)))
    if after is not None:
        steps.append((REFITTED, after, "after_bad_read", Decimal("0.004")))
    removed = refit_first + timedelta(hours=rng.randrange(6, 30), minutes=rng.choice([0, 20]))
    fitted_again = removed + timedelta(hours=rng.randrange(1, 20))
    installations: list[tuple[str, str, datetime, datetime | None]] = [
        (REFITTED, "SP-S1", refit_first - timedelta(days=3), removed),
        (REFITTED, "SP-S2", fitted_again, None),
    ]
    return Fleet(
        reads=sorted(reads, key=lambda r: (r[4], r[1], r[0])),
        steps=[s for s in steps if (s[0], s[1]) in {(r[0], r[1]) for r in reads}],
        installations=installations,
        cards_keyed_at=fitted_again + timedelta(days=1),
        round_every=timedelta(hours=rng.choice([1, 3, 7, 24])),
    )


def _reset(conn: psycopg.Connection) -> None:
    """The database as migrated, for the next example: no meters, reads nor consumption, zone UTC."""
    conn.execute(
        "TRUNCATE readings, meters, register_discontinuities, late_readings, consumption_hourly, "
        "consumption_daily, dma_consumption_hourly, meter_installations, service_points CASCADE"
    )
    conn.execute("UPDATE utility_settings SET value = 'UTC' WHERE name = 'timezone'")


def ingest(conn: psycopg.Connection, fleet: Fleet) -> None:
    """The reads stored as they arrive, a round's refresh every ``round_every`` (from its window's start,
    or the oldest read stored since, less 1 µs, as ``collector.vee.rounds.vee_round`` does), and the job
    cards recorded when keyed, refreshing their meter's consumption (server migration 0082)."""
    for meter, dma, role in METERS:
        conn.execute(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, %s, %s)", (meter, dma, role)
        )
    conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-S1', 'DMA-S'), ('SP-S2', 'DMA-S')")
    pending = list(fleet.reads)
    cards_pending = True
    steps = {(meter, ts): (kind, used) for meter, ts, kind, used in fleet.steps}
    now = fleet.reads[0][4]
    last_arrival = fleet.reads[-1][4]
    while pending or cards_pending:
        arrived = [r for r in pending if r[4] <= now]
        pending = [r for r in pending if r[4] > now]
        if arrived:
            with conn.cursor().copy(
                "COPY readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) FROM STDIN"
            ) as copy:
                for meter, ts, volume, quality, _ in arrived:
                    by = None if quality == "actual" else "test"
                    copy.write_row((meter, ts, volume, quality, by, by))
            for meter, ts, *_ in arrived:
                if (meter, ts) in steps:
                    conn.execute(
                        "INSERT INTO register_discontinuities (meter_id, ts, kind, consumption_m3) "
                        "VALUES (%s, %s, %s, %s)",
                        (meter, ts, *steps[meter, ts]),
                    )
        if cards_pending and fleet.cards_keyed_at <= now:
            with as_the_server(conn):  # keyed through the server, whose sessions run without JIT
                for meter, point, fitted, removed in fleet.installations:
                    conn.execute(
                        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
                        "VALUES (%s, %s, %s, %s)",
                        (point, meter, fitted, removed),
                    )
            cards_pending = False
        end = now + timedelta(hours=1)
        start = min([end - timedelta(days=2), *(r[1] - timedelta(microseconds=1) for r in arrived)])
        conn.execute("SELECT refresh_consumption(%s, %s)", (start, end))
        now = min(now + fleet.round_every, max(last_arrival, fleet.cards_keyed_at))
        if not pending and not cards_pending:
            break


def tables(conn: psycopg.Connection) -> Tables:
    return {name: conn.execute(query).fetchall() for name, query in TABLES.items()}


def set_zone(conn: psycopg.Connection, zone: str) -> None:
    conn.execute("SELECT set_utility_timezone(%s)", (zone,))


def first_difference(got: Tables, expected: Tables) -> str:
    """The first row of the first table that differs, in words, for the assertion's message."""
    for name in TABLES:
        extra = sorted(set(got[name]) - set(expected[name]))
        missing = sorted(set(expected[name]) - set(got[name]))
        if extra or missing:
            return (
                f"{name}: {len(extra)} rows not expected, first {extra[:2]}; "
                f"{len(missing)} missing, first {missing[:2]}"
            )
    return "none"


@pytest.fixture
def two_databases(timescale_admin_url: str, migrated_template: str) -> Iterator[tuple[str, str]]:
    """Two fresh migrated databases, dropped after the test."""
    urls = [create_database(timescale_admin_url, migrated_template) for _ in range(2)]
    try:
        yield urls[0], urls[1]
    finally:
        for url in urls:
            drop_database(timescale_admin_url, url)


def check_change(urls: tuple[str, str], fleet: Fleet, before: str, after: str) -> None:
    """The fleet in ``after`` from the start against the fleet in ``before``, then changed to ``after``,
    then back to ``before``."""
    with psycopg.connect(urls[0], autocommit=True) as zone_first, psycopg.connect(urls[1], autocommit=True) as changed:
        _reset(zone_first)
        _reset(changed)
        set_zone(zone_first, after)
        ingest(zone_first, fleet)
        set_zone(changed, before)
        ingest(changed, fleet)
        expected = tables(zone_first)
        assert expected["consumption_daily"] and expected["dma_consumption_hourly"]  # the fleet was counted
        in_before = tables(changed)
        set_zone(changed, after)
        got = tables(changed)
        assert got == expected, f"{before} → {after}: {first_difference(got, expected)}"
        set_zone(changed, before)
        back = tables(changed)
        assert back == in_before, f"{before} → {after} → {before}: {first_difference(back, in_before)}"


@pytest.mark.parametrize("zone", [z for z in ZONES if z != "UTC"])
def test_a_zone_set_after_the_reads_gives_what_it_gives_set_before_them(
    two_databases: tuple[str, str], zone: str
) -> None:
    check_change(two_databases, build_fleet(random.Random(zone), ANCHORS[zone]), "UTC", zone)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Asia/Kolkata", "America/St_Johns"),
        ("America/Los_Angeles", "Pacific/Auckland"),
        ("Asia/Tokyo", "UTC"),
        ("Pacific/Auckland", "Asia/Kolkata"),
    ],
)
def test_a_second_change_of_zone_and_back(two_databases: tuple[str, str], before: str, after: str) -> None:
    check_change(two_databases, build_fleet(random.Random(before + after), ANCHORS[after]), before, after)


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    before=st.sampled_from(ZONES),
    after=st.sampled_from(ZONES),
    anchor_of=st.sampled_from(ZONES),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_change_of_zone_gives_the_zone_from_the_start(
    two_databases: tuple[str, str], before: str, after: str, anchor_of: str, seed: int
) -> None:
    check_change(two_databases, build_fleet(random.Random(seed), ANCHORS[anchor_of]), before, after)


def test_the_command_changes_the_zone_as_the_function_does(two_databases: tuple[str, str]) -> None:
    """``aquami collector timezone`` on the stored reads: the rows of the zone set from the start."""
    fleet = build_fleet(random.Random(7), ANCHORS["Asia/Kolkata"])
    with psycopg.connect(two_databases[0], autocommit=True) as zone_first:
        set_zone(zone_first, "Asia/Kolkata")
        ingest(zone_first, fleet)
        expected = tables(zone_first)
    with psycopg.connect(two_databases[1], autocommit=True) as changed:
        ingest(changed, fleet)
    result = CliRunner().invoke(
        app, ["collector", "timezone", "Asia/Kolkata"], env={"AQUAMI_DATABASE_URL": two_databases[1]}
    )
    assert result.exit_code == 0, result.output
    with psycopg.connect(two_databases[1]) as changed:
        got = tables(changed)
    assert got == expected, first_difference(got, expected)


def _dropped(fleet: Fleet, cut: datetime) -> Fleet:
    """The fleet as if its reads before ``cut`` had never been taken."""
    return Fleet(
        reads=[r for r in fleet.reads if r[1] >= cut],
        steps=fleet.steps,
        installations=fleet.installations,
        cards_keyed_at=fleet.cards_keyed_at,
        round_every=fleet.round_every,
    )


#: A fleet's reads before this far after its first were dropped (drop_chunks by hand, after a copy).
DROPPED_AFTER = timedelta(days=1)
#: What the hint says to run to give up the consumption of the reads dropped (collector migration 0078).
GIVE_UP = (
    "DELETE FROM consumption_hourly c "
    "WHERE hour < coalesce((SELECT min(ts) FROM readings r WHERE r.meter_id = c.meter_id), 'infinity')"
)


def test_a_change_that_would_lose_the_consumption_of_readings_dropped_is_refused(
    two_databases: tuple[str, str],
) -> None:
    """Before 0078 the change went through and left 61 hourly rows fewer than the zone from the start
    (3.786 m³ of 6.530), the days and DMA hours of the reads dropped with them; now it is refused, in
    words, and the change done once that consumption is given up as its hint says gives what the
    zone from the start gives the reads left."""
    fleet = build_fleet(random.Random(3), ANCHORS["Asia/Kolkata"])
    cut = min(r[1] for r in fleet.reads) + DROPPED_AFTER
    env = {"AQUAMI_DATABASE_URL": two_databases[1]}
    with psycopg.connect(two_databases[1], autocommit=True) as changed:
        ingest(changed, fleet)
        changed.execute("DELETE FROM readings WHERE ts < %s", (cut,))
        kept = tables(changed)
        readings = changed.execute("SELECT count(*) FROM readings").fetchone()
    refused = CliRunner().invoke(app, ["collector", "timezone", "Asia/Kolkata"], env=env)
    assert refused.exit_code == 1, refused.output
    assert "counts reads no longer stored (dropped?)" in refused.output
    assert "changing the zone would lose it" in refused.output and "restore the readings dropped" in refused.output
    assert "Traceback" not in refused.output
    with psycopg.connect(two_databases[1], autocommit=True) as changed:
        assert changed.execute("SELECT utility_timezone()").fetchone() == ("UTC",)
        assert tables(changed) == kept
        assert changed.execute("SELECT count(*) FROM readings").fetchone() == readings
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match=r"meter '[A-Z0-9]+' in the hour from"):
            changed.execute("SELECT set_utility_timezone('Asia/Kolkata')")
        assert tables(changed) == kept
        changed.execute(GIVE_UP)
    done = CliRunner().invoke(app, ["collector", "timezone", "Asia/Kolkata"], env=env)
    assert done.exit_code == 0, done.output
    with psycopg.connect(two_databases[0], autocommit=True) as zone_first:
        set_zone(zone_first, "Asia/Kolkata")
        ingest(zone_first, _dropped(fleet, cut))
        expected = tables(zone_first)
    with psycopg.connect(two_databases[1]) as changed:
        got = tables(changed)
    assert got == expected, first_difference(got, expected)


def test_a_change_with_consumption_and_no_readings_left_is_refused(two_databases: tuple[str, str]) -> None:
    """Every reading dropped: the zone changed and the stored hours stayed laid out in the old zone's."""
    with psycopg.connect(two_databases[0], autocommit=True) as conn:
        ingest(conn, build_fleet(random.Random(5), ANCHORS["Asia/Tokyo"]))
        conn.execute("DELETE FROM readings")
        kept = tables(conn)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="changing the zone would lose it"):
            conn.execute("SELECT set_utility_timezone('Asia/Tokyo')")
        assert conn.execute("SELECT utility_timezone()").fetchone() == ("UTC",)
        assert tables(conn) == kept and kept["consumption_hourly"]
        conn.execute(GIVE_UP)
        assert conn.execute("SELECT set_utility_timezone('Asia/Tokyo')").fetchone() == (0,)
        assert conn.execute("SELECT utility_timezone()").fetchone() == ("Asia/Tokyo",)
        assert tables(conn) == {name: [] for name in TABLES}  # no day nor DMA hour left in UTC's layout
