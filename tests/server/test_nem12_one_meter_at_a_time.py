"""NEM12 works a window (a meter at a service point) at a time in the database, and writes what it did.

Before, the export's query grouped and sorted the whole fleet's hours at once: the hours' flags, grouped
where the planner expected a few thousand groups for 1.44 million (2,000 meters' month), were joined to
``consumption_hourly`` by a hash that spilled to disk in 16 batches, and the file's order came from one
sort of every row, 130 MB on disk at PostgreSQL's default 4 MB ``work_mem``. Now each window's hours and
flags are worked out beside it, sorted a meter's hours at a time, in memory: the export writes no
temporary file where it wrote two for 200 meters' fortnight.

The flags are now each hour's first interval by weakness and time (``DISTINCT ON``) rather than three
sorted arrays an hour, its hours keyed by whole seconds rather than instants, and a plain hour is made
without a call: checked here against the MDFF rules worked out from the reads themselves, for fleets
mixing actual hours with estimated, substituted and edited reads, reads within an hour and gaps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.bench_nem12 import START, fill
from server.billing import nem12

DAY = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 2
NOW = datetime(2026, 11, 10, tzinfo=UTC)
ARRIVED = datetime(2030, 1, 1, tzinfo=UTC)  # after any job card's record: the reads' arrival stamps the days


def _temp_files(conn: psycopg.Connection[Any]) -> int:
    """The temporary files this database has written, this connection's statistics flushed first."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # the flush happens as the session goes idle after a statement
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT temp_files FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def test_a_fleet_s_export_sorts_each_meter_s_hours_in_memory_and_writes_no_temporary_file(
    migrated_database_url: str,
) -> None:
    end = START + timedelta(days=14)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        fill(conn, 200, 14)  # 200 meters read hourly for a fortnight: 67,200 hours (100 fitted in 4 MB before)
        conn.execute("SET work_mem = '4MB'")  # PostgreSQL's default, whatever this server's is
        before = _temp_files(conn)
        text = nem12.nem12_file(conn, START, end, now=end)
        assert text.count("\r\n300,") == 200 * 14  # the whole fleet's file was written
        assert _temp_files(conn) == before  # before: the hash join and the file's sort spilled to disk


# ---- the file against the MDFF rules, from the reads --------------------------------------------------

WEAKNESS = {"estimated": 0, "substituted": 1, "edited": 2, "actual": 3}
KINDS = [
    ("actual", None, None),
    ("estimated", "vee:linear", "gap filled"),
    ("estimated", "vee:profile", "gap filled"),
    ("substituted", "site visit", "read on site"),
    ("edited", "ops", "corrected, by hand"),
]


@st.composite
def fleets(draw: st.DrawFn) -> dict[str, list[tuple[datetime, str, str | None, str | None, datetime]]]:
    """A few meters, each read at random minutes of two days (some hours several times, some not at all),
    mostly actual, some reads of each other quality, each arriving at its own time."""
    fleet = {}
    for m in range(draw(st.integers(1, 3))):
        minutes = draw(st.sets(st.integers(-90, DAYS * 24 * 60), min_size=2, max_size=40))
        minutes |= draw(st.sets(st.integers(0, 240), max_size=40))  # some hours read many times
        reads = []
        for minute in sorted(minutes):
            quality, by, reason = draw(st.sampled_from([KINDS[0]] * 3 + KINDS))  # mostly actual
            if reason is not None:  # each read's own: which of an hour's equally weak intervals flags it shows
                reason = f"{reason} at minute {minute}"
            arrived = ARRIVED + timedelta(minutes=draw(st.integers(0, 5000)))
            reads.append((DAY + timedelta(minutes=minute), quality, by, reason, arrived))
        fleet[f"M{m}"] = reads
    return fleet


def _placed(url: str, fleet: dict[str, list[tuple[datetime, str, str | None, str | None, datetime]]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("consumption_hourly", "readings", "meter_installations", "service_points", "meters"):
            conn.execute(f"DELETE FROM {table}")
        for meter, reads in fleet.items():
            conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter,))
            conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s)", (f"SP-{meter}",))
            conn.execute(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES (%s, %s, %s)",
                (f"SP-{meter}", meter, DAY - timedelta(days=30)),
            )
            with conn.cursor().copy(
                "COPY readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason, received_at) FROM STDIN"
            ) as copy:
                for i, (ts, quality, by, reason, arrived) in enumerate(reads):
                    volume = Decimal(100) + Decimal(10 * i + i * i % 7) / 1000  # rising: no backflow
                    copy.write_row((meter, ts, volume, quality, by, reason, arrived))
        conn.execute("SELECT refresh_consumption(%s, %s)", (DAY - timedelta(days=1), DAY + timedelta(days=DAYS + 1)))


def _expected_lines(
    conn: psycopg.Connection[Any], meter: str, reads: list[Any], export: nem12.Nem12Export
) -> list[str]:
    """A meter's 300 and 400 records worked out from its reads: each interval (read before, read] in the
    hour its read closes in, flagged by the weaker of its two reads (the closing one when as strong); an
    hour by its weakest interval (its first when as weak), accumulated since the read before a gap of
    more than 1.5 h; its UpdateDateTime when the newest read either side of its intervals arrived."""
    start, end = export.day0, export.day0 + timedelta(days=export.days)
    period = [r for r in reads if start < r[0] <= end]
    before = [r for r in reads if r[0] <= start]
    chain = before[-1:] + period
    # by hour: its first weakest interval's weakness, quality, quality_by and reason, its gap, its newest arrival
    flags: dict[int, tuple[int, str, str | None, str | None, datetime | None, datetime]] = {}
    for i, read in enumerate(chain):
        if read[0] <= start:
            continue  # the read before the period opens its first interval, and closes none of it
        previous = chain[i - 1] if i > 0 else None  # none: the meter's first read ever
        ts, quality, by, reason, arrived = read
        hour = int((ts - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0).timestamp())
        weaker = previous if previous is not None and WEAKNESS[previous[1]] < WEAKNESS[quality] else read
        gap = previous[0] if previous is not None and (ts - previous[0]).total_seconds() > nem12.GAP_S else None
        newest = arrived if previous is None else max(arrived, previous[4])
        interval = (WEAKNESS[weaker[1]], weaker[1], weaker[2], weaker[3])
        if hour in flags:  # the hour's intervals come in time order: an earlier one as weak stays
            known = flags[hour]
            if known[0] <= interval[0]:
                interval = known[:4]
            gap = min((g for g in (gap, known[4]) if g is not None), default=None)
            newest = max(newest, known[5])
        flags[hour] = (*interval, gap, newest)
    hours, arrived_at = {}, {}
    for hour_start, m3, unknown in conn.execute(
        "SELECT hour, consumption_m3, unknown FROM consumption_hourly WHERE meter_id = %s AND hour >= %s AND hour < %s",
        (meter, start, end),
    ).fetchall():
        key = int(hour_start.timestamp())
        _, quality, by, reason, gap, newest = flags.get(key, (0, None, None, None, None, None))
        hours[key] = nem12._hour_cell(m3, unknown, quality, by, reason, gap)
        if newest is not None:  # as the rows give it: microseconds since 1970
            arrived_at[key] = (newest - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return list(nem12._day_records(export, range(export.days), hours, arrived_at, {}, {}, nem12.FORWARD))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet=fleets())
def test_each_hour_is_flagged_by_its_weakest_interval_as_worked_out_from_its_reads(
    migrated_database_url: str, fleet: dict[str, list[Any]]
) -> None:
    _placed(migrated_database_url, fleet)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        export = nem12.prepare(conn, DAY, DAY + timedelta(days=DAYS), now=NOW)
        text = "".join(nem12.nem12_chunks(conn, export))
        records = [line for line in text.split("\r\n") if line[:3] in ("300", "400")]
        expected = [line for meter in sorted(fleet) for line in _expected_lines(conn, meter, fleet[meter], export)]
    assert records == expected
