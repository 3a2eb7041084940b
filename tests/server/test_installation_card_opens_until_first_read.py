"""The installation job card's register opens every billing period up to the fitted meter's first
read, as a silent meter's last read does: the water from the card to the first read is billed once,
in the period of the first read.

Before, a line opened on the card only where its window started at the installation. N fitted on
19 October with its card at 0.500 m³, first read on 3 November at 0.600: October's line opened on
the card with nothing to close on (``missing``), November's opened on the first read, so the
0.100 m³ between card and first read was billed in no period (NEM12, which puts it in the first
read's hour, held it: the two disagreed by that much)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from server.app import create_app
from server.auth import create_api_key
from server.billing.repository import determinant_lines
from tests.server.test_job_card_corrected_before_first_read import CARDS, FIRST_READ, _n_reads, exchange
from tests.server.test_job_card_corrected_late import _meters_file, _register

__all__ = ["exchange"]  # the fixture, imported for the tests below

N_LAST = Decimal("0.600") + Decimal("0.010") * 47  # N's last read (_n_reads: hourly for two days)
M_FIRST, M_LAST = Decimal("104.200"), Decimal("104.550")  # M's reads (the exchange fixture)


def _lines(client: TestClient, headers: dict[str, str], period: str) -> dict[str, dict]:
    answer = client.get(f"/billing/determinants?period={period}&account=A-1", headers=headers)
    assert answer.status_code == 200, answer.text
    return {line["meter_id"]: line for account in answer.json()["items"] for line in account["lines"]}


def _nem12_total(client: TestClient, headers: dict[str, str], period: str, account: str = "A-1") -> Decimal:
    """The file's E1 less its B1: the net water it holds."""
    answer = client.get(f"/billing/nem12?period={period}&account={account}", headers=headers)
    assert answer.status_code == 200, answer.text
    total, sign = Decimal(0), Decimal(1)
    for fields in (line.split(",") for line in answer.text.splitlines()):
        if fields[0] == "200":
            sign = Decimal(1) if fields[4] == "E1" else Decimal(-1)
        elif fields[0] == "300":
            total += sign * sum(Decimal(v) for v in fields[2:26])
    return total


def test_the_water_from_the_card_to_the_first_read_is_billed_in_the_first_read_s_period(
    exchange: tuple[str, TestClient, dict[str, str]],
) -> None:
    url, client, headers = exchange
    _n_reads(url)
    october, november, december = (_lines(client, headers, p) for p in ("2026-10", "2026-11", "2026-12"))
    card = Decimal(CARDS["initial"])
    # October: N opens on its card and has no read to close on; nothing billed for it there
    assert (october["N"]["opening"]["volume_m3"], october["N"]["closing"]) == (CARDS["initial"], None)
    assert (october["N"]["consumption_m3"], october["N"]["complete"]) == (None, False)
    # November opens on the card too (no read of N's before it) and bills card -> last read
    assert november["N"]["opening"] == {"ts": "2026-10-19T12:00:00Z", "volume_m3": "0.500", "quality": "substituted"}
    assert Decimal(november["N"]["consumption_m3"]) == N_LAST - card
    assert Decimal(november["N"]["actual_m3"]) == N_LAST - card
    # December opens on the last read: nothing counted twice
    assert december["N"]["opening"]["ts"] == (FIRST_READ + timedelta(hours=47)).isoformat().replace("+00:00", "Z")
    billed = sum((Decimal(lines["N"]["consumption_m3"] or 0) for lines in (october, november, december)), Decimal(0))
    assert billed == N_LAST - card  # the register's advance from the card to the last read, exactly
    # NEM12 holds the same water for the two months: M's and N's with their cards
    determinants = sum(
        (
            Decimal(line["consumption_m3"])
            for lines in (october, november)
            for line in lines.values()
            if line["consumption_m3"] is not None
        ),
        Decimal(0),
    )
    assert determinants == (M_LAST - M_FIRST) + (Decimal(CARDS["final"]) - M_LAST) + (N_LAST - card)
    assert _nem12_total(client, headers, "2026-10-01/2026-12-01") == determinants


def test_a_removal_card_in_a_later_period_than_the_last_read_closes_that_period(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """M's last read on 19 October, its removal (card 104.600) on 5 December: December's line opens on
    the October read and closes on the card, and M's water across the periods is its register's
    advance from its first read to the card."""
    url = migrated_database_url
    removal = datetime(2026, 12, 5, 9, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'x')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "VALUES ('A-1', 'SP-1', '2025-01-01Z')"
        )
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at, final_register_m3) "
            "VALUES ('SP-1', 'M', '2026-09-01Z', %s, 104.600)",
            (removal,),
        )
        last = datetime(2026, 10, 19, 11, tzinfo=UTC)
        for h in range(36):
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M', %s, %s)",
                (last - timedelta(hours=35 - h), M_FIRST + Decimal("0.010") * h),
            )
    with psycopg.connect(url, row_factory=dict_row) as conn:
        months = [datetime(2026, m, 1, tzinfo=UTC) for m in (10, 11, 12)] + [datetime(2027, 1, 1, tzinfo=UTC)]
        lines = {a.month: determinant_lines(conn, a, b, "A-1", None, None) for a, b in pairwise(months)}  # type: ignore[arg-type]
    (december,) = lines[12]
    assert (december["opening_ts"], december["closing_ts"], december["closing_volume_m3"]) == (
        last,
        removal,
        Decimal("104.600"),
    )
    billed = sum((line["consumption_m3"] or Decimal(0) for rows in lines.values() for line in rows), Decimal(0))
    assert billed == Decimal("104.600") - M_FIRST


def test_a_card_corrected_before_the_first_read_moves_each_period_that_opens_on_it(
    exchange: tuple[str, TestClient, dict[str, str]], tmp_path: Path
) -> None:
    """Every period up to the first read opens on the card, so correcting it revises each (as_of), and
    the correction is billed: November's line carries the corrected card to the first read."""
    url, client, headers = exchange
    before = {p: _lines(client, headers, p)["N"] for p in ("2026-10", "2026-11", "2026-12")}
    _register(url, _meters_file(tmp_path / "corrected.csv", **(CARDS | {"initial": "0.450"})))
    after = {p: _lines(client, headers, p)["N"] for p in ("2026-10", "2026-11", "2026-12")}
    for period in before:
        assert after[period]["opening"]["volume_m3"] == "0.450", period
        assert after[period]["as_of"] > before[period]["as_of"], period
    _n_reads(url)
    november = _lines(client, headers, "2026-11")["N"]
    assert Decimal(november["consumption_m3"]) == N_LAST - Decimal("0.450")
    assert _lines(client, headers, "2026-12")["N"]["opening"]["volume_m3"] == str(N_LAST)  # the last read


# The property: with random instants of installation, first read, reads and period boundaries, the
# periods' lines together bill the register's advance from the card (or, without one, the first
# read) to the last read, exactly; a period never counts water another one does.
START = datetime(2026, 9, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@st.composite
def placements(draw: st.DrawFn) -> tuple[datetime, Decimal | None, list[tuple[datetime, Decimal]], list[datetime]]:
    installed = START + HOUR * draw(st.integers(0, 24 * 60))
    card = draw(st.none() | st.decimals(Decimal("0"), Decimal("50"), places=3))
    first = installed + HOUR * draw(st.integers(1, 24 * 70))
    steps = draw(st.lists(st.tuples(st.integers(1, 24 * 20), st.integers(0, 5000)), min_size=0, max_size=5))
    register = (card if card is not None else Decimal(0)) + Decimal(draw(st.integers(0, 5000))) / 1000
    reads, ts = [(first, register)], first
    for hours, litres in steps:
        ts, register = ts + HOUR * hours, register + Decimal(litres) / 1000
        reads.append((ts, register))
    cuts = sorted(set(draw(st.lists(st.integers(1, 24 * 200), min_size=1, max_size=6))))
    bounds = [START, *(START + HOUR * c for c in cuts), START + HOUR * 24 * 200 + HOUR]
    return installed, card, reads, bounds


@pytest.fixture
def placed(migrated_database_url: str) -> str:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'x')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "VALUES ('A-1', 'SP-1', '2025-01-01Z')"
        )
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('P', true)")
    return migrated_database_url


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(placement=placements())
def test_the_periods_together_bill_the_register_s_advance_from_the_card(
    placed: str, placement: tuple[datetime, Decimal | None, list[tuple[datetime, Decimal]], list[datetime]]
) -> None:
    installed, card, reads, bounds = placement
    with psycopg.connect(placed, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM readings WHERE meter_id = 'P'")
        conn.execute("DELETE FROM meter_installations WHERE meter_id = 'P'")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, initial_register_m3) "
            "VALUES ('SP-1', 'P', %s, %s)",
            (installed, card),
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for ts, volume in reads:
                copy.write_row(("P", ts, volume))
        lines = [line for a, b in pairwise(bounds) for line in determinant_lines(conn, a, b, "A-1", None, None)]  # type: ignore[arg-type]
        conn.rollback()
    billed = sum((line["consumption_m3"] for line in lines if line["consumption_m3"] is not None), Decimal(0))
    opening = card if card is not None else reads[0][1]
    assert billed == reads[-1][1] - opening
    # a line is unknown only when no interval of water closes in it: between two registers known
    # (the card, the reads), each interval is billed where its later register lies
    registers = [*([(installed, card)] if card is not None else []), *reads]
    closings = [ts for ts, _ in registers[1:]]
    unknown = [line for line in lines if line["consumption_m3"] is None]
    assert not [u for u in unknown if any(u["w_from"] < ts <= u["w_to"] for ts in closings)], unknown


def test_a_tenant_moving_in_between_a_card_and_the_read_next_to_it_is_billed_the_card_s_water(
    migrated_database_url: str,
) -> None:
    """A-1 moves out, A-2 in, on 25 October: after N's installation card (19 October) and before its
    first read (3 November); after M's last read (19 October) and before its removal card (5 December).
    Both cards' water is A-2's, in its determinants and in its NEM12 file alike; A-1's file and lines
    hold none of it. Before, NEM12 left a card out of a window that did not start at the installation
    or hold the last read, so A-2's file missed the water its determinants billed."""
    url, move = migrated_database_url, datetime(2026, 10, 25, 12, tzinfo=UTC)
    fitted, removal = datetime(2026, 10, 19, 12, tzinfo=UTC), datetime(2026, 12, 5, 9, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'x'), ('A-2', 'y')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1'), ('SP-2')")
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true), ('N', true)")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) VALUES "
            "('A-1', 'SP-1', '2025-01-01Z', %(m)s), ('A-1', 'SP-2', '2025-01-01Z', %(m)s), "
            "('A-2', 'SP-1', %(m)s, NULL), ('A-2', 'SP-2', %(m)s, NULL)",
            {"m": move},
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at, "
            "initial_register_m3, final_register_m3) VALUES "
            "('SP-1', 'N', %s, NULL, 0.500, NULL), ('SP-2', 'M', '2026-09-01Z', %s, NULL, 104.600)",
            (fitted, removal),
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for h in range(36):
                copy.write_row(("M", fitted - timedelta(hours=36 - h), M_FIRST + Decimal("0.010") * h))
            for h in range(48):
                copy.write_row(("N", FIRST_READ + timedelta(hours=h), Decimal("0.600") + Decimal("0.010") * h))
        conn.execute("SELECT refresh_consumption('2026-10-01Z', '2027-01-01Z')")
    billed: dict[str, Decimal] = {}
    with TestClient(create_app(url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        for account in ("A-1", "A-2"):
            total = Decimal(0)
            for period in ("2026-10", "2026-11", "2026-12"):
                answer = client.get(f"/billing/determinants?period={period}&account={account}", headers=headers)
                assert answer.status_code == 200, answer.text
                for item in answer.json()["items"]:
                    total += sum((Decimal(line["consumption_m3"] or 0) for line in item["lines"]), Decimal(0))
            billed[account] = total
            nem12 = _nem12_total(client, headers, "2026-10-01/2027-01-01", account)
            assert nem12 == total, account
    assert billed["A-1"] == M_LAST - M_FIRST
    assert billed["A-2"] == (Decimal("104.600") - M_LAST) + (N_LAST - Decimal("0.500"))
