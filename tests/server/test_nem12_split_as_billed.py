"""NEM12 with ``account=`` splits a change of tenant where billing does, and writes nothing it does not know.

Billing opens a line on the last read of the installation at or before the line's start (``ts >=
installed_at``: a read at the installation itself is the installation's) and closes the line before
on the same read. NEM12's tenant split (``_SPLITS``' ``split_lo``) looked for that read with ``ts >
installed_at``: a read exactly at the installation was passed over, and the split fell back to the
change's own instant. No read lies between the installation and the change then, so the intervals
after either point are the same ones: the two rules give each tenant the same water, the same hours
and the same flags (checked below at exactly that read, and over random moves, reads and cards),
and NEM12 now reads as billing does.

A line with one read and no card (no read after its opening one, no job card's register to close on)
bills an unknown consumption. NEM12 holds no interval of it either: its hours are ``N`` (null data,
written 0 as the MDFF specification has a null interval), never ``A`` 0, which would vouch that no
water passed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from server.billing import nem12, repository
from server.billing.nem12 import nem12_file, prepare

DAY = datetime(2026, 11, 2, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
FIRST_DAY, LAST_DAY = DAY, DAY + timedelta(days=3)


def _register(installed: datetime, ts: datetime) -> Decimal:
    """The meter's register at ``ts``: 1 L a minute from 100 m³ at its installation."""
    return Decimal(100) + Decimal(int((ts - installed).total_seconds()) // 60) / 1000


def _placed(
    url: str, installed: datetime, card: Decimal | None, reads: dict[datetime, Decimal], move: datetime
) -> None:
    """Meter M at SP from ``installed``; OUT's agreement there ends at ``move``, IN's starts."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("readings", "service_agreements", "meter_installations", "accounts", "service_points", "meters"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('OUT', 'Out'), ('IN', 'In')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, initial_register_m3) "
            "VALUES ('SP', 'M', %s, %s)",
            (installed, card),
        )
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) "
            "VALUES ('OUT', 'SP', %(a)s, %(m)s), ('IN', 'SP', %(m)s, NULL)",
            {"a": DAY - timedelta(days=30), "m": move},
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for ts, volume in reads.items():
                copy.write_row(("M", ts, volume))
        conn.execute("SELECT refresh_consumption(%s, %s)", (DAY - timedelta(days=1), LAST_DAY + timedelta(days=1)))


def _billed_and_filed(url: str, account: str) -> tuple[list[dict[str, Any]], Decimal, list[tuple[str, str]]]:
    """The account's determinant lines, its file's water (E1 less B1) and its file's hours as (E1 value,
    flag)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        lines = repository.determinant_lines(conn, FIRST_DAY, LAST_DAY, account, None, None)  # type: ignore[arg-type]
    with psycopg.connect(url) as conn:
        text = nem12_file(conn, FIRST_DAY, LAST_DAY, account=account)
    water, sign, hours = Decimal(0), 1, []
    day_flag, values = "", []
    for fields in (line.split(",") for line in text.splitlines()):
        if fields[0] == "200":
            sign = 1 if fields[4] == "E1" else -1
        elif fields[0] == "300":
            water += sign * sum(Decimal(v) for v in fields[2:26])
            if sign == 1:
                day_flag, values = fields[26], fields[2:26]
                if day_flag != "V":
                    hours += [(value, day_flag) for value in values]
        elif fields[0] == "400" and sign == 1:
            hours += [(values[h], fields[3]) for h in range(int(fields[1]) - 1, int(fields[2]))]
    return lines, water, hours


def _splits(url: str, account: str) -> list[tuple[datetime | None, datetime | None]]:
    """Where NEM12 splits the account's water from its neighbours' (``_SPLITS``: ``split_lo``, ``split_hi``)."""
    with psycopg.connect(url) as conn:
        params = nem12._params(prepare(conn, FIRST_DAY, LAST_DAY, account=account))
        rows = conn.execute(f"WITH {nem12._STREAMS}, {nem12._SPLITS} SELECT split_lo, split_hi FROM splits", params)
        return [(lo, hi) for lo, hi in rows.fetchall()]


def _each_file_holds_what_billing_bills(url: str) -> dict[str, list[dict[str, Any]]]:
    """Each account's file holds its determinant's water when that is known, and only null hours
    (no value vouched for) when it is unknown."""
    billed: dict[str, list[dict[str, Any]]] = {}
    for account in ("OUT", "IN"):
        lines, water, hours = _billed_and_filed(url, account)
        billed[account] = lines
        assert len(lines) <= 1, lines
        if not lines:
            assert water == 0 and all(flag == "N" for _, flag in hours), (account, hours)
        elif lines[0]["consumption_m3"] is not None:
            assert water == lines[0]["consumption_m3"], (account, lines, hours)
        else:  # unknown: nothing in the file may say how much (an A 0 would say none)
            vouched = [(value, flag) for value, flag in hours if flag != "N" or Decimal(value) != 0]
            assert vouched == [], (account, hours)
    return billed


def test_a_move_with_its_last_read_at_the_installation_splits_there_as_billing_does(
    migrated_database_url: str,
) -> None:
    """M fitted at 10:00 and read then (no job card), next at 12:00; OUT moves out at 11:30. Billing
    closes OUT's line with nothing after its 10:00 opening read (one read, no card: unknown), and
    opens IN's on the 10:00 read, the last at or before the move: IN is billed 10:00-12:00. OUT's
    file is null throughout, IN's holds the 0.120 m³ in the hour the 12:00 read closes."""
    url, installed = migrated_database_url, DAY + timedelta(hours=10)
    reads = {ts: _register(installed, ts) for ts in (installed, DAY + timedelta(hours=12), DAY + timedelta(hours=13))}
    _placed(url, installed, None, reads, DAY + timedelta(hours=11, minutes=30))
    billed = _each_file_holds_what_billing_bills(url)
    (out,), (incoming,) = billed["OUT"], billed["IN"]
    assert (out["opening_ts"], out["closing_ts"], out["consumption_m3"]) == (installed, None, None)
    assert incoming["opening_ts"] == installed
    # NEM12 splits there too: the outgoing tenant's water ends, the incoming one's begins, at the 10:00
    # read (before, the incoming tenant's began at 11:30, the move itself: the same intervals after it)
    assert _splits(url, "OUT") == [(None, installed)]
    assert _splits(url, "IN") == [(installed, None)]
    assert incoming["consumption_m3"] == reads[DAY + timedelta(hours=13)] - reads[installed]
    _, _, hours = _billed_and_filed(url, "IN")
    assert hours[11] == ("0.12", "S18")  # 10:00-12:00 in the hour the 12:00 read closes: accumulated
    _, _, out_hours = _billed_and_filed(url, "OUT")
    assert out_hours and {flag for _, flag in out_hours} == {"N"}


@pytest.mark.parametrize("minute", [0, 30])
def test_a_move_at_a_read_s_instant_gives_the_interval_it_opens_to_the_tenant_moving_in(
    migrated_database_url: str, minute: int
) -> None:
    """Reads every 30 minutes from the installation (read then too); a move exactly at a read's
    instant: the interval the read closes is the outgoing tenant's, the one it opens the incoming one's,
    in their lines and their files alike."""
    url, installed = migrated_database_url, DAY + timedelta(hours=6)
    move = DAY + timedelta(hours=10, minutes=minute)
    reads = {installed + QUARTER * 2 * k: _register(installed, installed + QUARTER * 2 * k) for k in range(60)}
    _placed(url, installed, None, reads, move)
    billed = _each_file_holds_what_billing_bills(url)
    assert billed["OUT"][0]["closing_ts"] == billed["IN"][0]["opening_ts"] == move


@st.composite
def tenancies(draw: st.DrawFn) -> tuple[datetime, Decimal | None, dict[datetime, Decimal], datetime]:
    """A meter fitted at a quarter hour (a job card or none), read at random quarters and minutes after
    (at its installation or not, and maybe before it elsewhere), and a move at one of its reads, at its
    installation, or at any minute."""
    installed = DAY + QUARTER * draw(st.integers(0, 40))
    card = draw(st.none() | st.just(Decimal("99.500")))
    slots = draw(st.sets(st.integers(1, 24 * 4 * 2), min_size=1, max_size=12))
    times = {installed + QUARTER * s for s in slots}
    times |= {installed + timedelta(minutes=m) for m in draw(st.sets(st.integers(1, 600), max_size=2))}
    if draw(st.booleans()):
        times.add(installed)
    reads = {ts: _register(installed, ts) for ts in times}
    if draw(st.booleans()):  # read where it was before, its register then higher (a refurbished meter)
        reads[installed - timedelta(minutes=draw(st.integers(1, 200)))] = Decimal(150)
    move = draw(
        st.sampled_from(sorted(times))
        | st.just(installed)
        | st.integers(1, 24 * 60).map(lambda m: installed + timedelta(minutes=m))
    )
    return installed, card, reads, move


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenancy=tenancies())
def test_each_tenant_s_file_holds_what_its_line_bills_wherever_the_move_falls(
    migrated_database_url: str, tenancy: tuple[datetime, Decimal | None, dict[datetime, Decimal], datetime]
) -> None:
    installed, card, reads, move = tenancy
    _placed(migrated_database_url, installed, card, reads, move)
    _each_file_holds_what_billing_bills(migrated_database_url)
