"""Determinant lines say what VEE found that a person must check, and are then not complete.

Before, a glitch read of 0 on a 1234.5 m³ register billed 1234 m³ and a young meter's 10 L step
back 9.5 m³, both 'actual' and complete; a replacement no job card confirmed was billed silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.vee.runner import run_vee
from server.app import create_app
from server.auth import create_api_key

FEB, MAR = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
STEP = datetime(2026, 2, 10, 12, tzinfo=UTC)


def _hourly(meter: str, first: Decimal, per_hour: Decimal) -> list[tuple[str, datetime, Decimal]]:
    start = FEB - timedelta(days=1)
    return [(meter, start + timedelta(hours=h), first + per_hour * h) for h in range(30 * 24 + 1)]


def _setup(conn: psycopg.Connection, meter: str, installations: list[tuple[datetime, datetime | None]]) -> None:
    conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter,))
    conn.execute("INSERT INTO accounts (account_id, name) VALUES (%s, 'x')", (f"A-{meter}",))
    conn.execute("INSERT INTO service_points (service_point_id) VALUES (%s)", (f"SP-{meter}",))
    conn.execute(
        "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES (%s, %s, '2025-01-01Z')",
        (f"A-{meter}", f"SP-{meter}"),
    )
    for installed, removed in installations:
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
            "VALUES (%s, %s, %s, %s)",
            (f"SP-{meter}", meter, installed, removed),
        )


@pytest.fixture
def determinants(migrated_database_url: str) -> Iterator[dict[str, dict]]:
    url = migrated_database_url
    since = datetime(2025, 1, 1, tzinfo=UTC)
    rows: list[tuple[str, datetime, Decimal]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        for meter in ("GLITCH", "SWAPPED", "BURST"):
            _setup(conn, meter, [(since, None)])
        confirmed = STEP - timedelta(minutes=30)  # a job card: the meter's register replaced at 11:30
        _setup(conn, "CARDED", [(since, confirmed), (confirmed, None)])
        glitch = _hourly("GLITCH", Decimal("1234.500"), Decimal("0.010"))
        rows += [(m, t, Decimal(0) if t == STEP else v) for m, t, v in glitch]
        for meter in ("SWAPPED", "CARDED"):  # from 150 m³ to a new register counting from 0.5 m³
            old = _hourly(meter, Decimal("150.000"), Decimal("0.010"))
            rows += [(m, t, v - Decimal("150") - Decimal("0.010") * 240 + Decimal("0.5") if t >= STEP else v)
                     for m, t, v in old]  # fmt: skip
        burst = _hourly("BURST", Decimal("300.000"), Decimal("0.010"))
        rows += [(m, t, v + Decimal(12) if t >= STEP else v) for m, t, v in burst]  # 12 m³ in an hour
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    with psycopg.connect(url) as conn:
        run_vee(conn, FEB - timedelta(days=1), MAR + timedelta(hours=1), now=MAR + timedelta(hours=2))
    with TestClient(create_app(url)) as client:
        body = client.get("/billing/determinants?period=2026-02", headers={"Authorization": f"Bearer {key}"}).json()
    yield {d["account_id"].removeprefix("A-"): d for d in body["items"]}


def test_a_glitch_read_of_zero_bills_the_register_s_difference_and_is_complete(determinants):
    glitch = determinants["GLITCH"]
    assert Decimal(glitch["consumption_m3"]) == Decimal("6.72")  # 28 days at 10 L an hour, not 1234 m³
    assert glitch["complete"] and glitch["lines"][0]["issues"] == []


def test_a_replacement_no_job_card_confirms_is_billed_but_not_complete(determinants):
    swapped = determinants["SWAPPED"]
    (line,) = swapped["lines"]
    # 2.27 m³ on the old register, the new one counted from zero to 0.62 m³, then 4.44 m³ on it
    assert Decimal(line["consumption_m3"]) == Decimal("7.33")
    assert (line["complete"], line["issues"], swapped["complete"]) == (False, ["unconfirmed_replacement"], False)
    carded = determinants["CARDED"]
    assert carded["complete"] and all(line["issues"] == [] for line in carded["lines"])


def test_water_over_the_meter_s_maximum_flow_is_not_complete(determinants):
    burst = determinants["BURST"]
    assert burst["lines"][0]["issues"] == ["over_max_flow"] and not burst["complete"]
    assert Decimal(burst["consumption_m3"]) == Decimal("18.72")
