"""The meter page's daily consumption holds the water from a new meter's installation job card to
its first read, on that read's day, as billing bills it (and NEM12 places it, in the first read's
hour). Before, the page summed the intervals between reads alone: N fitted at 0.500 m³ and first read
at 0.600 showed 0.100 m³ less over its days than its bills."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from server.meters.repository import daily_consumption
from server.web.daily_chart import chart
from tests.server.test_installation_card_opens_until_first_read import N_LAST, _lines
from tests.server.test_job_card_corrected_before_first_read import CARDS, _n_reads, exchange

__all__ = ["exchange"]  # the fixture, imported for the test below


def test_a_new_meter_s_days_sum_to_what_billing_bills_it(exchange: tuple[str, TestClient, dict[str, str]]) -> None:
    url, client, headers = exchange
    _n_reads(url)  # hourly from 3 November 10:00, 0.600 m³, for two days
    billed = sum(
        (Decimal(_lines(client, headers, p)["N"]["consumption_m3"] or 0) for p in ("2026-10", "2026-11", "2026-12")),
        Decimal(0),
    )
    assert billed == N_LAST - Decimal(CARDS["initial"])
    with psycopg.connect(url, row_factory=dict_row) as conn:
        days = daily_consumption(conn, "N", 30)  # type: ignore[arg-type]  # dict rows, as the page reads them
    shown = chart(days)
    assert shown is not None and shown.total_m3 == billed
    by_day = {row["date"]: (row["consumption_m3"], row["card_m3"]) for row in days}
    # the card's 0.100 m³ and 14 intervals (the last closing at midnight), on the first read's day
    assert by_day[date(2026, 11, 3)] == (Decimal("0.100") + Decimal("0.010") * 14, Decimal("0.100"))
    assert all(card is None for day, (_, card) in by_day.items() if day != date(2026, 11, 3))


def test_a_card_above_the_first_read_adds_nothing(exchange: tuple[str, TestClient, dict[str, str]]) -> None:
    """Billing cannot count that water (the line's consumption unknown): the page shows none either."""
    url, _, _ = exchange
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meter_installations SET initial_register_m3 = 0.700 WHERE meter_id = 'N'")
    _n_reads(url)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        days = daily_consumption(conn, "N", 30)  # type: ignore[arg-type]  # dict rows, as the page reads them
    assert all(row["card_m3"] is None for row in days)
    assert sum((row["consumption_m3"] or Decimal(0) for row in days), Decimal(0)) == N_LAST - Decimal("0.600")
