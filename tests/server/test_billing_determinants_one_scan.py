"""A determinant line's as_of and its consumption split are read in one scan of the meter's reads
(repository._SPLIT), where they were two: the answer is the same to the byte.

The fleet is the benchmark's (benchmarks/bench_determinants.py ``fill``): accounts with two meters, a
meter exchanged mid-month with job cards, a tenant moving out and another in, days without reads,
estimated reads with more places than a register's, a register stepping back, a rollover VEE
explained, water over the meter's maximum flow, a meter silent before the month ends, bursts and
leaks, and accounts with no meter. The reference is the query as it was (``baseline_lines``: the same
query with the two scans put back), run on the same database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from benchmarks.bench_determinants import END, EXCHANGE, FITTED, PERIOD, START, baseline_lines, fill
from server.app import create_app
from server.auth import create_api_key
from server.billing import repository
from tests.services import migrated_database

#: Up to 37, every variation of ``fill`` at least once (its largest period is 37).
ACCOUNTS = 40


@pytest.fixture(scope="module")
def fleet(timescale_admin_url: str, migrated_template: str) -> Iterator[tuple[str, str]]:
    with migrated_database(timescale_admin_url, migrated_template) as url:
        with psycopg.connect(url) as conn:
            fill(conn, ACCOUNTS)
            key = create_api_key(conn, "test billing", ["billing"])
            conn.commit()
            conn.autocommit = True
            conn.execute("ANALYZE")
        yield url, key


def _exact(rows: list[dict[str, Any]]) -> list[list[tuple[str, str]]]:
    """Each row's columns and values as their repr: a Decimal's places (5.2080 against 5.208) count."""
    return [[(name, repr(value)) for name, value in row.items()] for row in rows]


def test_the_fleet_has_every_case_the_comparison_is_for(fleet: tuple[str, str]) -> None:
    """Not vacuous: the month's lines hold each case the two scans could answer differently in."""
    url, _ = fleet
    with psycopg.connect(url, row_factory=dict_row) as conn:
        lines = repository.determinant_lines(conn, START, END, None, None, None)  # type: ignore[arg-type]
    meters_by_account: dict[str, set[str]] = {}
    for line in lines:
        meters_by_account.setdefault(line["account_id"], set()).add(line["meter_id"])
    assert any(len(meters) > 1 for meters in meters_by_account.values())  # several meters, an exchange
    assert any(line["consumption_m3"] is None for line in lines)  # a register stepping back
    assert any(line["estimated_m3"] for line in lines)  # estimated reads
    assert any(line["estimated_m3"] is not None and line["estimated_m3"].as_tuple().exponent < -3 for line in lines)
    assert any(line["w_from"] > START for line in lines) and any(line["w_to"] < END for line in lines)
    assert any(not line["read_after_end"] for line in lines)  # a meter silent before the end
    assert any(line["vee_issues"] for line in lines) and any(line["leaks"] for line in lines)
    assert any(line["opening_quality"] == "substituted" for line in lines)  # a job card opens a line
    assert "A-00017" not in meters_by_account  # an account with no meter has no line


@pytest.mark.parametrize("csv", [False, True], ids=["json", "csv"])
def test_the_month_s_determinants_are_the_same_bytes_as_the_two_scans_gave(
    fleet: tuple[str, str], monkeypatch: pytest.MonkeyPatch, csv: bool
) -> None:
    url, key = fleet
    path = f"/billing/determinants?period={PERIOD}&limit=5000" + ("&format=csv" if csv else "")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(url)) as client:
        one_scan = client.get(path, headers=headers)
        monkeypatch.setattr(repository, "determinant_lines", baseline_lines)
        two_scans = client.get(path, headers=headers)
    assert one_scan.status_code == two_scans.status_code == 200, one_scan.text
    assert one_scan.content == two_scans.content


#: Half-hours from two days before the month to three after it: on and between the reads' hours,
#: before the first read and after the last.
moments = st.integers(min_value=-2 * 48, max_value=((END - START).days + 3) * 48).map(
    lambda half_hours: START + timedelta(minutes=30 * half_hours)
)


@settings(max_examples=40, deadline=None)
@given(ends=st.tuples(moments, moments).filter(lambda ends: ends[0] != ends[1]).map(sorted), account=st.none())
# a line with no opening (the meter fitted at FITTED, between two reads) that has a read after its end
@example(ends=[FITTED - timedelta(minutes=20), FITTED + timedelta(minutes=10)], account="A-00020")
# a line opened by a job card, whose first read is a bad read that arrived late
@example(ends=[EXCHANGE - timedelta(minutes=30), EXCHANGE + timedelta(hours=3)], account="A-00007")
@example(ends=[START, END], account="A-00007")
def test_any_period_s_lines_are_the_two_scans_lines(
    fleet: tuple[str, str], ends: list[datetime], account: str | None
) -> None:
    """Every column of every line, for any period (a day, a month, across the exchange or the move,
    ending before a silent meter's last read or after the data), for the whole fleet (the examples: one account)."""
    url, _ = fleet
    start, end = ends
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        now = repository.determinant_lines(conn, start, end, account, None, None)  # type: ignore[arg-type]
        was = baseline_lines(conn, start, end, account, None, None)
    assert _exact(now) == _exact(was)
