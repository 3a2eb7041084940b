"""The collector's consumption tables leave out the water between a meter's old place and its new one
(collector migration 0076), as billing does: the interval from a re-fitted meter's last read where it
was to its first read where it is now, which no installation holds whole. Before, consumption_hourly,
consumption_daily and dma_consumption_hourly counted it (a bench test's water, or a refurbished
register's difference from the old one: an unknown hour), and with them the DMA balance.

A job card recorded after the reads were refreshed refreshes the meter's days around it (server
migration 0082), and the collector's part migrates and refreshes before the server's table exists."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

import collector.migrate
from server.billing.repository import determinant_lines
from tests.server.test_meter_page_daily_cards_as_billed import MONTHS, Fitting, Reads, _record
from tests.services import admin_url, create_database, drop_database

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


#: X at SP-1 from 1 October, removed 3 October 06:00, tested on a bench and fitted at SP-2 on 10
#: October; Z the same, its register reset by a refurbishment (150.000 there, 10.000 here); Y, in the
#: same DMA, fitted once.
READS = {
    "X": [(at(2, 6), "1.100"), (at(2, 18), "1.200"), (at(11, 6), "2.050"), (at(11, 18), "2.150")],
    "Z": [(at(2, 6), "149.900"), (at(2, 18), "150.000"), (at(11, 6), "10.000"), (at(11, 18), "10.200")],
    "Y": [(at(2, 6), "5.000"), (at(11, 6), "5.300"), (at(11, 18), "5.400")],
}


def _fleet(url: str, refit_recorded: bool = True) -> None:
    """X, Y and Z in DMA D1, read as READS; the re-fits (X's and Z's removal and second installation)
    recorded now, or not yet."""
    with psycopg.connect(url, autocommit=True) as conn:
        for meter in READS:
            conn.execute("INSERT INTO meters (meter_id, role, dma) VALUES (%s, 'customer', 'D1')", (meter,))
            points = (f"{meter}-1", f"{meter}-2")
            conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s), (%s)", points)
            conn.execute(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES (%s, %s, %s)",
                (f"{meter}-1", meter, at(1, 0)),
            )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for meter, reads in READS.items():
                for ts, volume in reads:
                    copy.write_row((meter, ts, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
        if refit_recorded:
            _refit(conn)


def _refit(conn: psycopg.Connection) -> None:
    for meter in ("X", "Z"):
        conn.execute("UPDATE meter_installations SET removed_at = %s WHERE meter_id = %s", (at(3, 6), meter))
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES (%s, %s, %s)",
            (f"{meter}-2", meter, at(10, 0)),
        )


def _tables(url: str) -> tuple[dict, dict, dict]:
    """(meter, UTC date) → (consumption, intervals, unknown) from consumption_daily; (meter, hour) →
    consumption from consumption_hourly; hour → (consumption, unknown) of D1 from dma_consumption_hourly."""
    with psycopg.connect(url) as conn:
        daily = {
            (m, d.date()): (c, n, u)
            for m, d, c, n, u in conn.execute(
                "SELECT meter_id, day, consumption_m3, intervals, unknown FROM consumption_daily"
            )
        }
        rows = conn.execute("SELECT meter_id, hour, consumption_m3 FROM consumption_hourly")
        hourly = {(m, h): c for m, h, c in rows}
        dma = {
            h: (c, u)
            for h, c, u in conn.execute(
                "SELECT hour, consumption_m3, unknown FROM dma_consumption_hourly WHERE dma = 'D1'"
            )
        }
    return daily, hourly, dma


def _assert_the_re_fits_water_is_left_out(url: str) -> None:
    daily, hourly, dma = _tables(url)
    eleventh = at(11, 0).date()
    # X: 2.050 to 2.150 on the 11th, not the 0.850 m³ from 1.200 at SP-1 with it (0.950 before)
    assert daily[("X", eleventh)] == (Decimal("0.100"), 1, 0)
    # Z: 10.000 to 10.200, without the unknown interval from 150.000 (before: 1 interval unknown)
    assert daily[("Z", eleventh)] == (Decimal("0.200"), 1, 0)
    # the hour 05:00-06:00 on the 11th closed only the intervals across the re-fits: no row of X or Z
    assert ("X", at(11, 5)) not in hourly and ("Z", at(11, 5)) not in hourly
    # Y's interval from the 2nd to the 11th is the DMA's alone that hour, known (before: X's bench water
    # in it, and Z's unknown)
    assert dma[at(11, 5)] == (Decimal("0.300"), 0)
    assert dma[at(11, 17)] == (Decimal("0.400"), 0)
    # the 2nd, each meter's water at its first place, is as it was
    assert daily[("X", at(2, 0).date())] == (Decimal("0.100"), 1, 0)


def test_a_re_fitted_meter_s_hours_days_and_dma_leave_out_the_water_between_its_places(
    migrated_database_url: str,
) -> None:
    url = migrated_database_url
    _fleet(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
    _assert_the_re_fits_water_is_left_out(url)
    # refresh_meter_consumption (a VEE round's meters, an edit) counts as refresh_consumption does
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM consumption_hourly")
        conn.execute("DELETE FROM consumption_daily")
        conn.execute("DELETE FROM dma_consumption_hourly")
        conn.execute(
            "SELECT refresh_meter_consumption(ARRAY['X', 'Y', 'Z'], ARRAY[%s, %s, %s]::timestamptz[], %s)",
            (MONTHS[0], MONTHS[0], MONTHS[0], MONTHS[-1]),
        )
    _assert_the_re_fits_water_is_left_out(url)


def test_a_re_fit_recorded_after_its_reads_were_refreshed_refreshes_them_and_a_withdrawal_restores_them(
    migrated_database_url: str,
) -> None:
    """The job cards keyed in after the round refreshed the 11th: the stored days follow them at once."""
    url = migrated_database_url
    _fleet(url, refit_recorded=False)
    daily, _, _ = _tables(url)
    assert daily[("X", at(11, 0).date())] == (Decimal("0.950"), 2, 0)  # not yet known as a re-fit: the meter's
    with psycopg.connect(url, autocommit=True) as conn:
        _refit(conn)
    _assert_the_re_fits_water_is_left_out(url)
    with psycopg.connect(url, autocommit=True) as conn:  # X's second installation was recorded in error
        conn.execute("DELETE FROM meter_installations WHERE meter_id = 'X' AND installed_at = %s", (at(10, 0),))
        conn.execute("UPDATE meter_installations SET removed_at = NULL WHERE meter_id = 'X'")
    daily, _, _ = _tables(url)
    assert daily[("X", at(11, 0).date())] == (Decimal("0.950"), 2, 0)


def test_the_collector_s_migrations_refresh_before_the_server_s_table_exists_and_the_server_s_catch_up(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh database migrates the collector's part first (collector/migrate.py): 0076's refreshes run
    without meter_installations, counting every interval; the server's part, once applied, leaves the
    re-fits' water out of what was stored before it (server migration 0082)."""
    monkeypatch.setattr(collector.migrate, "PARTS", ("collector",))
    collector.migrate.migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('meter_installations')").fetchone() == (None,)
        conn.execute("INSERT INTO meters (meter_id, role, dma) VALUES ('X', 'customer', 'D1')")
        for ts, volume in READS["X"]:
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('X', %s, %s)", (ts, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
    daily, _, _ = _tables(database_url)
    assert daily[("X", at(11, 0).date())] == (Decimal("0.950"), 2, 0)
    monkeypatch.setattr(collector.migrate, "PARTS", ("collector", "server"))
    collector.migrate.migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('X-1'), ('X-2')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
            "VALUES ('X-1', 'X', %s, %s), ('X-2', 'X', %s, NULL)",
            (at(1, 0), at(3, 6), at(10, 0)),
        )
    daily, _, _ = _tables(database_url)
    assert daily[("X", at(11, 0).date())] == (Decimal("0.100"), 1, 0)


def test_an_existing_database_s_re_fits_are_refreshed_by_the_migration() -> None:
    """A database whose re-fits were recorded before these migrations: migrating leaves their water out
    of the days stored before. Migrated up to 0076 and 0082 excluded, the fleet stored, then migrated."""
    server = admin_url()
    url = create_database(server)
    try:
        files = collector.migrate.migration_files()
        later = {
            "collector/0076_consumption_leaves_out_water_between_installations.sql",
            "server/0082_consumption_follows_installations_recorded.sql",
        }
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(collector.migrate, "migration_files", lambda: [f for f in files if f[0] not in later])
            collector.migrate.migrate(url)
        _fleet(url)
        daily, _, _ = _tables(url)
        assert daily[("X", at(11, 0).date())] == (Decimal("0.950"), 2, 0)  # as the refresh before counted it
        assert sorted(collector.migrate.migrate(url)) == sorted(later)
        _assert_the_re_fits_water_is_left_out(url)
    finally:
        drop_database(server, url)


@st.composite
def _lives_with_bench_reads(draw: st.DrawFn) -> tuple[list[Fitting], Reads]:
    """One to three installations of a meter in turn (fitted again at the instant it was removed, or
    later), without job cards, read on an hourly grid anywhere from a day before the first to five
    days after the last: inside them, at their instants, and between them (a bench, the store); the
    register never goes back, and a refurbishment may set it back between two installations."""
    n = draw(st.integers(1, 3))
    bounds = sorted(draw(st.lists(st.integers(24, 24 * 30), min_size=2 * n, max_size=2 * n, unique=True)))
    if draw(st.booleans()) and n > 1:
        bounds[2] = bounds[1]
    open_last = draw(st.booleans())
    spans = [(bounds[2 * k], None if open_last and k == n - 1 else bounds[2 * k + 1]) for k in range(n)]
    hours = sorted(set(draw(st.lists(st.integers(0, bounds[-1] + 24 * 5), min_size=1, max_size=14))))
    # a refurbishment may set the register back before a re-fit: its first read at or after its
    # installation (not where the meter leaves another installation at that instant: that one's read)
    resets = {
        min((h for h in hours if h >= since), default=None)
        for k, (since, _) in enumerate(spans)
        if k and since != spans[k - 1][1] and draw(st.booleans())
    }
    register, reads = Decimal("10.000"), []
    for h in hours:
        if h in resets:
            register = Decimal("0.000")
        register += Decimal(draw(st.integers(0, 500))) / 1000
        reads.append((T0 + timedelta(hours=h), register))
    # bad reads (a glitch VEE found: read 0.000), neither first nor last, nor next to another or to a reset
    for i in range(1, len(reads) - 1):
        neighbours = {hours[i - 1], hours[i], hours[i + 1]}
        if draw(st.booleans()) and not neighbours & resets and reads[i - 1][1] != BAD:
            reads[i] = (reads[i][0], BAD)
    fittings: list[Fitting] = [
        (T0 + timedelta(hours=s), None if u is None else T0 + timedelta(hours=u), None, None) for s, u in spans
    ]
    return fittings, reads


#: a bad read's register in the strategy above
BAD = Decimal("-1")


def _steps(reads: Reads) -> list[tuple[datetime, datetime, Decimal]]:
    """Each interval (previous read, read] and its water as VEE counts it around a bad read: none to it,
    from the read before it to the one after; the bad reads stored as 0.000 with their steps."""
    steps = []
    for i in range(1, len(reads)):
        (prev, prev_m3), (ts, m3) = reads[i - 1], reads[i]
        if m3 == BAD:
            steps.append((prev, ts, Decimal(0)))
        elif prev_m3 == BAD:
            steps.append((prev, ts, m3 - reads[i - 2][1]))
        else:
            steps.append((prev, ts, m3 - prev_m3))
    return steps


def _store_bad_reads(url: str, reads: Reads) -> None:
    """The bad reads as VEE stores them (collector/vee/rules.py): 0.000, a step counting nothing, and the
    next read's step the water since the read before the glitch; then the days refreshed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM register_discontinuities")
        for i, (ts, m3) in enumerate(reads):
            if m3 != BAD:
                continue
            conn.execute("UPDATE readings SET volume_m3 = 0 WHERE meter_id = 'X' AND ts = %s", (ts,))
            conn.execute(
                "INSERT INTO register_discontinuities (meter_id, ts, kind, consumption_m3) VALUES "
                "('X', %s, 'bad_read', 0), ('X', %s, 'after_bad_read', %s)",
                (ts, reads[i + 1][0], reads[i + 1][1] - reads[i - 1][1]),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))


def _billed_by_point(url: str) -> dict[str, Decimal]:
    """What billing bills meter X at each service point (its installations SP-1, SP-2, ...), month by month."""
    billed: dict[str, Decimal] = defaultdict(Decimal)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for start, end in itertools.pairwise(MONTHS):
            for line in determinant_lines(conn, start, end, None, None, None):  # type: ignore[arg-type]  # dict rows
                if line["meter_id"] == "X" and line["consumption_m3"] is not None:
                    billed[line["service_point_id"]] += line["consumption_m3"]
    return billed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(life=_lives_with_bench_reads())
# re-fitted with a register set back, read on the bench between: the bench's water is no installation's,
# the intervals from the old place to the bench and from the bench to the new place are left out
@example(
    life=(
        [
            (T0 + timedelta(hours=24), T0 + timedelta(hours=30), None, None),
            (T0 + timedelta(hours=40), None, None, None),
        ],
        [
            (T0 + timedelta(hours=h), Decimal(v))
            for h, v in ((25, "150.000"), (29, "150.100"), (33, "0.000"), (35, "0.200"), (41, "0.300"), (45, "0.400"))
        ],
    )
)
# a bad read last before the removal (billing closes on the read before it) and one at the next
# installation (billing opens on the read after it): the intervals to and from each left out too
@example(
    life=(
        [
            (T0 + timedelta(hours=24), T0 + timedelta(hours=30), None, None),
            (T0 + timedelta(hours=40), None, None, None),
        ],
        [
            (T0 + timedelta(hours=h), v)
            for h, v in (
                (25, Decimal("10.100")),
                (28, Decimal("10.200")),
                (29, BAD),
                (33, Decimal("10.400")),
                (40, BAD),
                (41, Decimal("10.600")),
                (45, Decimal("10.700")),
            )
        ],
    )
)
def test_each_installation_s_stored_hours_are_billing_s_water_and_the_bench_s_its_own(
    migrated_database_url: str, life: tuple[list[Fitting], Reads]
) -> None:
    """Per installation: the stored hours whose intervals close within it, (installed_at, removed_at],
    sum to what billing bills at its service point (no job cards: billing's water is the reads'), bad
    reads opening and closing none of them. The meter's stored days sum to that, and to the intervals
    no installation reaches (the bench's)."""
    installations, reads = life
    _record(migrated_database_url, installations, [(ts, max(m3, Decimal(0))) for ts, m3 in reads])
    _store_bad_reads(migrated_database_url, reads)
    billed = _billed_by_point(migrated_database_url)
    with psycopg.connect(migrated_database_url) as conn:
        hourly = conn.execute("SELECT hour, consumption_m3, unknown FROM consumption_hourly WHERE meter_id = 'X'")
        hours = [(hour + timedelta(hours=1), m3, unknown) for hour, m3, unknown in hourly]
        stored_days = conn.execute("SELECT sum(consumption_m3) FROM consumption_daily WHERE meter_id = 'X'").fetchone()
    assert all(unknown == 0 for _, _, unknown in hours)  # a set-back register is only ever across installations
    spans = [(since, until or datetime.max.replace(tzinfo=UTC)) for since, until, _, _ in installations]
    held = Decimal(0)
    for n, (since, until) in enumerate(spans, start=1):
        stored = sum((m3 for end, m3, _ in hours if since < end <= until), Decimal(0))
        assert stored == billed.get(f"SP-{n}", Decimal(0)), (n, since, until)
        held += stored
    # the bench's: intervals between two reads that no installation reaches, on the hourly grid
    bench = sum(
        (m3 for prev, ts, m3 in _steps(reads) if not any(ts >= since and prev < until for since, until in spans)),
        Decimal(0),
    )
    assert ((stored_days[0] if stored_days else None) or Decimal(0)) == held + bench
