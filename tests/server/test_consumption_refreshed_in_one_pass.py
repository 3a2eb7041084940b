"""Job cards recorded in one statement refresh their meters' consumption in one pass (collector migration
0076's refresh_meter_consumption_windows, called by server migration 0082's trigger): each meter's days
around its instants, and each DMA's hours once, over the union of its meters' days. Before, the trigger
refreshed each (meter, instant) in a call of its own, each recomputing the meter's DMA over those days
from all the DMA's meters: 78 ms a job card in 500-meter DMAs, hours for a utility's import."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 10, 1, tzinfo=UTC)
ZONE = "Australia/Sydney"  # local days not UTC's, so a window's days are the utility's
#: meter → DMA; all customers
FLEET = {"A": "D1", "B": "D1", "C": "D2"}
DAYS = 8

Window = tuple[str, int, int]  # meter, from and to as hours after T0


def _fleet(conn: psycopg.Connection, reads: dict[str, list[tuple[int, int]]]) -> None:
    """The fleet read at the hours given (hour after T0, litres added), A re-fitted at hour 100 (its
    water between the two places left out: the windows' candidates), stored by a full refresh."""
    conn.execute("SELECT set_utility_timezone(%s)", (ZONE,))
    for meter, dma in FLEET.items():
        conn.execute("INSERT INTO meters (meter_id, role, dma) VALUES (%s, 'customer', %s)", (meter, dma))
    conn.execute("INSERT INTO service_points (service_point_id) VALUES ('A-1'), ('A-2')")
    conn.execute(
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
        "VALUES ('A-1', 'A', %s, %s), ('A-2', 'A', %s, NULL)",
        (T0 - timedelta(days=1), T0 + timedelta(hours=90), T0 + timedelta(hours=100)),
    )
    with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
        for meter, hours in reads.items():
            register = Decimal("1.000")
            for hour, litres in hours:
                register += Decimal(litres) / 1000
                copy.write_row((meter, T0 + timedelta(hours=hour), register))
    conn.execute("SELECT refresh_consumption(%s, %s)", (T0 - timedelta(days=2), T0 + timedelta(days=DAYS + 2)))


def _stored(conn: psycopg.Connection) -> tuple[dict, dict, dict]:
    """(meter, hour), (meter, day) and (dma, hour) → the stored row's values."""
    hourly = {
        (m, h): rest
        for m, h, *rest in conn.execute(
            "SELECT meter_id, hour, consumption_m3, intervals, not_actual, unknown FROM consumption_hourly"
        )
    }
    daily = {
        (m, d): rest
        for m, d, *rest in conn.execute(
            "SELECT meter_id, day, consumption_m3, intervals, not_actual, unknown FROM consumption_daily"
        )
    }
    dma = {
        (d, h): rest
        for d, h, *rest in conn.execute(
            "SELECT dma, hour, consumption_m3, meters, not_actual, unknown FROM dma_consumption_hourly"
        )
    }
    return hourly, daily, dma


def _local_days(since: datetime, until: datetime) -> set[date]:
    """The utility's days from the one holding `since` to the one holding the last instant before `until`."""
    first = since.astimezone(ZoneInfo(ZONE)).date()
    last = (until - timedelta(microseconds=1)).astimezone(ZoneInfo(ZONE)).date()
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def _day(moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(ZONE)).date()


_reads = st.lists(st.tuples(st.integers(-30, 24 * DAYS + 30), st.integers(0, 300)), max_size=30).map(
    lambda rows: sorted(dict(rows).items())
)
_windows = st.lists(
    st.tuples(st.sampled_from(sorted(FLEET)), st.integers(-30, 24 * DAYS), st.integers(1, 24 * 3)).map(
        lambda w: (w[0], w[1], w[1] + w[2])
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reads=st.fixed_dictionaries({m: _reads for m in FLEET}), windows=_windows)
def test_refreshing_windows_recomputes_their_days_and_their_dmas_hours_and_nothing_else(
    migrated_database_url: str, reads: dict[str, list[tuple[int, int]]], windows: list[Window]
) -> None:
    """Stored consumption spoiled (+1000 m³ everywhere), then windows refreshed at once: each meter's
    hours and days in its windows' local days are what a full refresh stores, every other row keeps its
    spoiled value, and each DMA's hours in its meters' windows are the sum of its meters' stored hours."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        for table in ("dma_consumption_hourly", "consumption_daily", "consumption_hourly", "readings"):
            conn.execute(f"DELETE FROM {table}")  # a fixed name: each example's fleet afresh
        conn.execute("DELETE FROM meter_installations")
        conn.execute("DELETE FROM service_points")
        conn.execute("DELETE FROM meters")
        _fleet(conn, reads)
        truth_hourly, truth_daily, _ = _stored(conn)
        for table in ("consumption_hourly", "consumption_daily", "dma_consumption_hourly"):
            conn.execute(f"UPDATE {table} SET consumption_m3 = consumption_m3 + 1000")  # fixed names
        spoiled_hourly, spoiled_daily, spoiled_dma = _stored(conn)
        conn.execute(
            "SELECT refresh_meter_consumption_windows(%s, %s, %s)",
            (
                [m for m, _, _ in windows],
                [T0 + timedelta(hours=f) for _, f, _ in windows],
                [T0 + timedelta(hours=t) for _, _, t in windows],
            ),
        )
        hourly, daily, dma = _stored(conn)
    days: dict[str, set[date]] = {m: set() for m in FLEET}
    for meter, since, until in windows:
        days[meter] |= _local_days(T0 + timedelta(hours=since), T0 + timedelta(hours=until))

    def refreshed(meter: str, moment: datetime) -> bool:
        return _day(moment) in days[meter]

    assert {k: v for k, v in hourly.items() if refreshed(*k)} == {
        k: v for k, v in truth_hourly.items() if refreshed(*k)
    }
    assert {k: v for k, v in hourly.items() if not refreshed(*k)} == {
        k: v for k, v in spoiled_hourly.items() if not refreshed(*k)
    }
    assert {k: v for k, v in daily.items() if refreshed(*k)} == {k: v for k, v in truth_daily.items() if refreshed(*k)}
    assert {k: v for k, v in daily.items() if not refreshed(*k)} == {
        k: v for k, v in spoiled_daily.items() if not refreshed(*k)
    }
    dma_days = {d: set().union(*(days[m] for m, dm in FLEET.items() if dm == d)) for d in set(FLEET.values())}
    expected_dma: dict[tuple[str, datetime], list] = {}
    for (meter, hour), (m3, _, not_actual, unknown) in hourly.items():
        if _day(hour) in dma_days[FLEET[meter]]:
            total = expected_dma.setdefault((FLEET[meter], hour), [Decimal(0), 0, 0, 0])
            total[0] += m3
            total[1] += 1
            total[2] += not_actual
            total[3] += unknown
    assert {k: v for k, v in dma.items() if _day(k[1]) in dma_days[k[0]]} == expected_dma
    assert {k: v for k, v in dma.items() if _day(k[1]) not in dma_days[k[0]]} == {
        k: v for k, v in spoiled_dma.items() if _day(k[1]) not in dma_days[k[0]]
    }


def test_a_statement_of_job_cards_recomputes_each_dma_s_hours_once(migrated_database_url: str) -> None:
    """Twenty meters in two DMAs, read hourly for four days, their installations imported in one
    statement at mid-history: the DMAs' hours are written by one statement (before: one a job card),
    and the stored consumption is what a full refresh stores."""
    meters = [f"M{n:02}" for n in range(20)]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        for n, meter in enumerate(meters):
            conn.execute("INSERT INTO meters (meter_id, role, dma) VALUES (%s, 'customer', %s)", (meter, f"D{n % 2}"))
            conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s)", (f"SP-{meter}",))
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for n, meter in enumerate(meters):
                for hour in range(24 * 4):
                    copy.write_row((meter, T0 + timedelta(hours=hour), Decimal(hour * (n + 1)) / 1000))
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=4)))
        conn.execute("CREATE TABLE dma_writes (n int)")
        conn.execute(
            "CREATE FUNCTION count_dma_write() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO dma_writes VALUES (1); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER count_dma_write AFTER INSERT ON dma_consumption_hourly "
            "FOR EACH STATEMENT EXECUTE FUNCTION count_dma_write()"
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) "
            "SELECT 'SP-' || m, m, %s FROM unnest(%s::text[]) m",
            (T0 + timedelta(days=2, minutes=30), meters),
        )
        assert conn.execute("SELECT count(*) FROM dma_writes").fetchone() == (1,)
        after_the_job_cards = _stored(conn)
        # the first reads at the installations now open the meters' water there: their intervals before
        # are left out, as a full refresh leaves them out
        assert ("M00", T0 + timedelta(days=2)) not in after_the_job_cards[0]
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(days=4)))
        assert _stored(conn) == after_the_job_cards
