"""The pages write a register's volume to the litre at least (3 places), as the register counts and
the API's billing writes volumes, and never round it. Before, they wrote it as stored: a register
stored as 481.13 showed "481.13" in the column beside "481.124", read as a coarser reading (or 10 L
less: "481.13" under "481.124" looks like a register that went backwards)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from server.app import create_app
from server.auth import create_api_key
from server.meters.repository import register_meters
from server.web.pages import templates

AT = datetime(2026, 3, 2, 4, tzinfo=UTC)
volume = templates.env.filters["volume"]


_VOLUMES = st.integers(0, 7).flatmap(lambda places: st.decimals(min_value=0, max_value=10**9, places=places))


@given(_VOLUMES)
def test_a_volume_is_written_to_the_litre_at_least_and_never_rounded(value: Decimal) -> None:
    assert value.is_finite()
    written = volume(value)
    assert Decimal(written) == value  # the same number
    whole, _, places = written.partition(".")
    assert len(places) >= 3 and "E" not in written.upper() and whole.lstrip("-").isdigit()


@pytest.mark.parametrize(
    ("stored", "written"),
    [
        (Decimal("481.13"), "481.130"),
        (Decimal("0"), "0.000"),
        (Decimal("12"), "12.000"),
        (Decimal("481.124"), "481.124"),
        (Decimal("0.0000001"), "0.0000001"),  # an estimate's places are kept, never "1E-7"
        (Decimal("7.2000"), "7.2000"),
        (481.13, "481.130"),  # a float as stored, as repr says it
    ],
)
def test_examples(stored: Decimal | float, written: str) -> None:
    assert volume(stored) == written


@pytest.fixture
def pages(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care", ["customer_care"])
        register_meters(conn, [("M1", "D1", "customer")])
        conn.execute("UPDATE meters SET has_readings = true WHERE meter_id = 'M1'")  # as ingest does
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, reverse_volume_m3, quality) VALUES ('M1', %s, 481.13, 0.5,"
            " 'actual')",
            (AT,),
        )
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, {"Authorization": f"Bearer {key}"}


def test_the_meters_page_and_a_meters_page_write_the_register_to_the_litre(pages) -> None:
    client, headers = pages
    listed = client.get("/", headers=headers).text
    assert '<td class="num">481.130</td>' in listed and "481.13<" not in listed
    page = client.get("/care/meters/M1", headers=headers).text
    assert "481.130 m³ at 2026-03-02 04:00:00 UTC" in page  # first and latest reading
    assert '<td class="num">481.130</td>' in page and '<td class="num">0.500</td>' in page  # the readings table
    assert "481.13<" not in page and "481.13 " not in page
