"""The meter page's days hold the meter's job cards as billing bills them, so they add up to the bills:
the removal card's water (from the last read to ``final_register_m3``) on the removal's day, and a
meter fitted again (removed, then installed anew) has its new installation card's water to its first
read after it, in place of the interval from its last read before, which billing does not bill.

Before, the page added an installation card's water only for a meter never read before it was fitted,
and no removal card's: a meter removed with a card after its last read showed that much less than its
bills, and a meter fitted again showed the water it measured off the wall (a bench test) and not its
card's."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from collector.vee.runner import run_vee
from server.billing.repository import determinant_lines
from server.meters.repository import daily_consumption
from server.web.daily_chart import chart
from tests.server.test_installation_card_opens_until_first_read import M_LAST, _lines
from tests.server.test_job_card_corrected_before_first_read import CARDS, EXCHANGE, exchange
from tests.server_session import as_the_server, set_as_the_server

__all__ = ["exchange"]  # the fixture, imported for the test below

T0 = datetime(2026, 10, 1, tzinfo=UTC)
#: an installation: installed_at, removed_at (None: still fitted), its cards' registers (None: not read)
Fitting = tuple[datetime, datetime | None, Decimal | None, Decimal | None]
Reads = list[tuple[datetime, Decimal]]
MONTHS = [datetime(2026, m, 1, tzinfo=UTC) for m in (9, 10, 11, 12)] + [datetime(2027, 1, 1, tzinfo=UTC)]


def _shown(url: str, meter_id: str) -> tuple[Decimal, list[dict]]:
    """The page's days of the meter (a year of them) and their sum."""
    with set_as_the_server(psycopg.connect(url, row_factory=dict_row)) as conn:
        days = daily_consumption(conn, meter_id, 400)  # type: ignore[arg-type]  # dict rows, as the page reads them
    return sum((row["consumption_m3"] or Decimal(0) for row in days), Decimal(0)), days


def _billed(url: str, meter_id: str) -> Decimal:
    """What billing bills the meter, month by month from September 2026 to December, over every account.
    A line without a consumption is one without a closing (no read yet in its month), never an unknown."""
    total = Decimal(0)
    with set_as_the_server(psycopg.connect(url, row_factory=dict_row)) as conn:
        for start, end in itertools.pairwise(MONTHS):
            for line in determinant_lines(conn, start, end, None, None, None):  # type: ignore[arg-type]  # dict rows
                if line["meter_id"] != meter_id:
                    continue
                if line["consumption_m3"] is None:
                    assert line["closing_ts"] is None, line
                    continue
                total += line["consumption_m3"]
    return total


def test_a_removal_card_s_water_is_on_the_removal_s_day(exchange: tuple[str, TestClient, dict[str, str]]) -> None:
    """M read hourly to 11:00 (104.550 m³), removed at 12:00 with 104.555: the 5 L on 19 October."""
    url, client, headers = exchange
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
    billed = Decimal(_lines(client, headers, "2026-10")["M"]["consumption_m3"])
    assert billed == Decimal(CARDS["final"]) - Decimal("104.200")  # from its first read to the card
    total, days = _shown(url, "M")
    assert total == billed == _billed(url, "M")
    shown = chart(days)
    assert shown is not None and shown.total_m3 == billed
    by_day = {row["date"]: row for row in days}
    removal_day = by_day[EXCHANGE.date()]
    assert removal_day["card_m3"] == Decimal(CARDS["final"]) - M_LAST == Decimal("0.005")
    assert all(row["card_m3"] is None for day, row in by_day.items() if day != EXCHANGE.date())


def _record(
    url: str,
    installations: Sequence[Fitting],
    reads: Reads,
) -> None:
    """Meter X fitted at SP-1, SP-2, ... in turn (each point an account's since 2025), read at ``reads``."""
    with psycopg.connect(url, autocommit=True) as conn:
        with as_the_server(conn):  # the installations, accounts and agreements, recorded through the server
            _record_installations(conn, installations)
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as copy:
            for ts, volume in reads:
                copy.write_row(("X", ts, volume, ts + timedelta(minutes=1)))
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))


def _record_installations(conn: psycopg.Connection, installations: Sequence[Fitting]) -> None:
    """Meter X's installations at SP-1, SP-2, ... in turn, each point an account's since 2025, in
    place of any before; its readings gone."""
    conn.execute("DELETE FROM meter_installations")
    conn.execute("DELETE FROM readings")
    conn.execute(
        "INSERT INTO meters (meter_id, registered, has_readings) VALUES ('X', true, true) ON CONFLICT DO NOTHING"
    )
    for n, (since, until, initial, final) in enumerate(installations, start=1):
        point, account = f"SP-{n}", f"A-{n}"
        conn.execute("INSERT INTO accounts (account_id, name) VALUES (%s, 'x') ON CONFLICT DO NOTHING", (account,))
        conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s) ON CONFLICT DO NOTHING", (point,))
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "SELECT %s, %s, '2025-01-01Z' "
            "WHERE NOT EXISTS (SELECT 1 FROM service_agreements WHERE account_id = %s)",
            (account, point, account),
        )
        conn.execute(
            "INSERT INTO meter_installations "
            "(service_point_id, meter_id, installed_at, removed_at, initial_register_m3, final_register_m3) "
            "VALUES (%s, 'X', %s, %s, %s, %s)",
            (point, since, until, initial, final),
        )


def test_a_meter_fitted_again_has_its_new_installation_card_s_water(migrated_database_url: str) -> None:
    """X at SP-1 from 1 October (card 1.000), read 2 October (1.100, 1.200), removed 3 October 06:00 with
    1.250; tested on a bench (0.750 m³ through it) and fitted at SP-2 on 10 October with 2.000, read 11
    October (2.050, 2.150). Billed: 0.250 at SP-1, 0.150 at SP-2. Before, the page showed 11 October's
    interval from 1.200 to 2.050, the bench's water with it, and no card: 0.200 + 0.950."""
    url = migrated_database_url
    at = lambda day, hour: datetime(2026, 10, day, hour, tzinfo=UTC)  # noqa: E731
    _record(
        url,
        [
            (at(1, 0), at(3, 6), Decimal("1.000"), Decimal("1.250")),
            (at(10, 0), None, Decimal("2.000"), None),
        ],
        [
            (at(2, 6), Decimal("1.100")),
            (at(2, 18), Decimal("1.200")),
            (at(11, 6), Decimal("2.050")),
            (at(11, 18), Decimal("2.150")),
        ],
    )
    billed = _billed(url, "X")
    assert billed == Decimal("0.400")
    total, days = _shown(url, "X")
    assert total == billed
    by_day = {row["date"]: (row["consumption_m3"], row["card_m3"]) for row in days}
    assert by_day[date(2026, 10, 2)] == (Decimal("0.200"), Decimal("0.100"))  # the installation card's
    assert by_day[date(2026, 10, 3)] == (Decimal("0.050"), Decimal("0.050"))  # the removal card's
    assert by_day[date(2026, 10, 11)] == (Decimal("0.150"), Decimal("0.050"))  # 2.000 to 2.050, then 0.100
    shown = chart(days)
    assert shown is not None and shown.total_m3 == billed
    # a day of a card's water alone says so (before, the table's "0 actual")
    said = {day.date: day.said for day in shown.days}
    assert said[date(2026, 10, 3)] == "0.050 m³ from a job card"
    assert said[date(2026, 10, 2)] == "1 actual; 0.100 m³ from a job card"


@pytest.mark.parametrize(("initial", "shown_10th"), [(Decimal("1.250"), Decimal("0.050")), (None, None)])
def test_a_bad_read_at_the_installation_opens_nothing_on_the_page(
    migrated_database_url: str, initial: Decimal | None, shown_10th: Decimal | None
) -> None:
    """X at SP-1 from 1 October (card 1.000), read 2 October (1.100, 1.200), removed 3 October; fitted at
    SP-2 on 10 October, its register as it was (card 1.250, or none), read 0.000 at the installation (a
    glitch VEE finds a bad read), 1.300 at 06:00 and 1.400 on 11 October. Billing opens SP-2 on the card,
    or on the 06:00 read, not on the bad read: 0.150 (0.100) at SP-2. Before, the page opened on the bad
    read, kept the interval VEE counts from the read before it (1.200 on 2 October, 0.100 m³, the water
    before the re-fit too) and left the card out: 0.400 against 0.350 billed, 0.300 without a card."""
    url = migrated_database_url
    at = lambda day, hour: datetime(2026, 10, day, hour, tzinfo=UTC)  # noqa: E731
    _record(
        url,
        [(at(1, 0), at(3, 6), Decimal("1.000"), None), (at(10, 0), None, initial, None)],
        [
            (at(2, 6), Decimal("1.100")),
            (at(2, 18), Decimal("1.200")),
            (at(10, 0), Decimal("0.000")),
            (at(10, 6), Decimal("1.300")),
            (at(11, 6), Decimal("1.400")),
        ],
    )
    with psycopg.connect(url) as conn:
        run_vee(conn, MONTHS[0], MONTHS[-1], now=MONTHS[-1], meters=["X"], estimate_gaps=False)
        kinds = conn.execute("SELECT ts, kind FROM register_discontinuities WHERE meter_id = 'X' ORDER BY ts")
        assert kinds.fetchall() == [(at(10, 0), "bad_read"), (at(10, 6), "after_bad_read")]
        conn.execute("SELECT refresh_consumption(%s, %s)", (MONTHS[0], MONTHS[-1]))
    billed = _billed(url, "X")
    assert billed == Decimal("0.200") + (shown_10th or 0) + Decimal("0.100")
    total, days = _shown(url, "X")
    assert total == billed
    by_day = {row["date"]: row["consumption_m3"] for row in days}
    assert by_day[date(2026, 10, 10)] == shown_10th  # the card's water to 06:00, or nothing billed


@st.composite
def _meter_lives(
    draw: st.DrawFn,
) -> tuple[list[Fitting], Reads]:
    """One to three installations of a meter in turn (fitted again at the instant it was removed, or
    later), each with or without job cards, and reads inside them (their instants included, where a
    read takes a card's place), on an hourly grid; the register never goes back (a card or read above
    the next one leaves billing's consumption unknown, with no sum to compare)."""
    n = draw(st.integers(1, 3))
    bounds = sorted(draw(st.lists(st.integers(0, 24 * 40), min_size=2 * n, max_size=2 * n, unique=True)))
    if draw(st.booleans()) and n > 1:  # fitted again at the instant of its removal
        bounds[2] = bounds[1]
    open_last = draw(st.booleans())
    spans = [(bounds[2 * k], None if open_last and k == n - 1 else bounds[2 * k + 1]) for k in range(n)]
    hours: set[int] = set()
    for since, until in spans:
        end = until if until is not None else since + 24 * 5
        hours |= set(draw(st.lists(st.integers(since, end), max_size=6)))
    # every instant in time order, a card before a read at its instant; the register's value at each
    events: list[tuple[int, int, int]] = []  # (hour, order, index)
    for k, (since, until) in enumerate(spans):
        events.append((since, 1 if k else 0, k))  # an installation card (after a removal card at that hour)
        if until is not None:
            events.append((until, 0, k))
    events += [(h, 2, -1) for h in hours]
    register = Decimal("10.000")
    values: dict[tuple[int, int, int], Decimal] = {}
    for event in sorted(events):
        register += Decimal(draw(st.integers(0, 500))) / 1000
        values[event] = register
    installations: list[Fitting] = []
    for k, (since, until) in enumerate(spans):
        initial = values[(since, 1 if k else 0, k)] if draw(st.booleans()) else None
        final = values[(until, 0, k)] if until is not None and draw(st.booleans()) else None
        at = lambda h: T0 + timedelta(hours=h)  # noqa: E731
        installations.append((at(since), None if until is None else at(until), initial, final))
    reads = [(T0 + timedelta(hours=h), values[(h, 2, -1)]) for h in sorted(hours)]
    return installations, reads


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(life=_meter_lives())
# fitted again with no cards: billing opens on the first read there, not on the read before, another
# installation's, so the interval across the two is the page's no more than billing's
@example(
    life=(
        [(T0, T0 + timedelta(hours=1), None, None), (T0 + timedelta(hours=3), None, None, None)],
        [(T0 + timedelta(hours=h), Decimal(v)) for h, v in ((0, "1.000"), (1, "1.100"), (4, "1.200"), (5, "1.300"))],
    )
)
# a removal card with neither a read nor an installation card in its installation: billing bills nothing,
# as the read before (10.000, the earlier installation's) is no opening of it
@example(
    life=(
        [
            (T0, T0 + timedelta(hours=1), None, None),
            (T0 + timedelta(hours=2), T0 + timedelta(hours=3), None, None),
            (T0 + timedelta(hours=4), T0 + timedelta(hours=5), None, Decimal("10.001")),
        ],
        [(T0 + timedelta(hours=2), Decimal("10.000"))],
    )
)
def test_the_page_s_days_sum_to_the_bills_wherever_cards_and_reads_fall(
    migrated_database_url: str,
    life: tuple[list[Fitting], Reads],
) -> None:
    installations, reads = life
    _record(migrated_database_url, installations, reads)
    total, _ = _shown(migrated_database_url, "X")
    assert total == _billed(migrated_database_url, "X")
