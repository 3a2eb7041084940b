"""A job card's register corrected marks revised only the billing periods and NEM12 days that depend
on it (server migrations 0067 and 0068): the installation card's periods (each line from the
installation up to the one of the fitted meter's first read opens on the card) and the day of the
hour that first read closes (NEM12 carries the card's water there), the removal card's period and
day. Before 0067, 0063 moved UpdateDateTime of every day from the installation to the first read
though only the ends' days hold the card's water; 0068 logs the installation card up to the first
read again, as the determinants now open every period until then on it (a NEM12 day between holds
no read of the meter's: its UpdateDateTime is the file's own time whatever the log says)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from tests.server.test_job_card_corrected_late import _meters_file, _register, _stamps

EXCHANGE = datetime(2026, 10, 19, 12, tzinfo=UTC)  # M removed, N fitted (as in test_job_card_corrected_late)
FIRST_READ = datetime(2026, 11, 3, 10, tzinfo=UTC)  # N's first read, when it has any
CARDS = {"initial": "0.500", "final": "104.555"}
PERIODS = ("2026-10", "2026-11", "2026-12")
RECORDED_BEFORE = datetime(2026, 9, 1, tzinfo=UTC)


@pytest.fixture
def exchange(migrated_database_url: str, tmp_path: Path) -> Iterator[tuple[str, TestClient, dict[str, str]]]:
    """M read hourly to 11:00 on the exchange day, N fitted at 12:00, its cards entered in September."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'x')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "VALUES ('A-1', 'SP-1', '2025-01-01Z')"
        )
    _register(url, _meters_file(tmp_path / "meters.csv", **CARDS))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE account_membership_changes SET recorded_at = %s", (RECORDED_BEFORE,))
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as copy:
            for h in range(36):
                t = EXCHANGE - timedelta(hours=36 - h)
                copy.write_row(("M", t, Decimal("104.200") + Decimal("0.010") * h, t + timedelta(minutes=1)))
    with TestClient(create_app(url)) as client:
        yield url, client, {"Authorization": f"Bearer {key}"}


def _n_reads(url: str) -> None:
    """N's hourly reads from FIRST_READ for two days, each received a minute after its time."""
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as copy:
            for h in range(48):
                t = FIRST_READ + timedelta(hours=h)
                copy.write_row(("N", t, Decimal("0.600") + Decimal("0.010") * h, t + timedelta(minutes=1)))
        conn.execute(
            "SELECT refresh_consumption(%s, %s)", (EXCHANGE - timedelta(days=2), FIRST_READ + timedelta(days=3))
        )


def _as_of(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, str], str]:
    """Each period's lines' as_of, by (period, meter)."""
    found = {}
    for period in PERIODS:
        answer = client.get(f"/billing/determinants?period={period}&account=A-1", headers=headers)
        assert answer.status_code == 200, answer.text
        for account in answer.json()["items"]:
            for line in account["lines"]:
                found[(period, line["meter_id"])] = line["as_of"]
    return found


def _days(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    """Each day's UpdateDateTime, of the days with reads: a day of none (QualityMethod ``N``) is
    stamped with the export's own time, which moves with the clock between two downloads (the
    test failed when they fell in two seconds)."""
    answer = client.get("/billing/nem12?period=2026-10-19/2026-11-05&account=A-1", headers=headers)
    assert answer.status_code == 200, answer.text
    without_reads = {
        f[1] for f in (line.split(",") for line in answer.text.splitlines()) if f[0] == "300" and f[-5] == "N"
    }
    return {day: stamp for day, stamp in _stamps(answer.text).items() if day not in without_reads}


def _correct(url: str, tmp_path: Path, card: str) -> datetime:
    _register(
        url, _meters_file(tmp_path / "corrected.csv", **(CARDS | {card: "0.450" if card == "initial" else "104.558"}))
    )
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(recorded_at) FROM account_membership_changes").fetchone()
    assert row is not None and row[0] > RECORDED_BEFORE
    return row[0]


def test_an_installation_card_corrected_before_the_first_read_revises_the_periods_that_open_on_it(
    exchange: tuple[str, TestClient, dict[str, str]], tmp_path: Path
) -> None:
    """Every period up to the first read opens on the card (server migration 0068): October, and with
    no read yet every later one; M's October line does not rest on N's card."""
    url, client, headers = exchange
    before = _as_of(client, headers)
    recorded = _correct(url, tmp_path, "initial")
    after = _as_of(client, headers)
    assert after[("2026-10", "M")] == before[("2026-10", "M")]
    for period in PERIODS:
        assert before[(period, "N")] == "2026-09-01T00:00:00Z", period
        assert datetime.fromisoformat(after[(period, "N")]) == recorded, period


def test_an_installation_card_corrected_after_the_first_read_revises_its_period_and_the_first_read_s_day(
    exchange: tuple[str, TestClient, dict[str, str]], tmp_path: Path
) -> None:
    url, client, headers = exchange
    _n_reads(url)
    before, days_before = _as_of(client, headers), _days(client, headers)
    recorded = _correct(url, tmp_path, "initial")
    after, days_after = _as_of(client, headers), _days(client, headers)
    stamp = f"{recorded.astimezone(UTC):%Y%m%d%H%M%S}"
    assert datetime.fromisoformat(after[("2026-10", "N")]) == recorded
    assert after[("2026-12", "N")] == before[("2026-12", "N")]
    assert days_after["20261103"] == stamp  # the first read's hour carries the card's water (NEM12)
    assert days_after["20261019"] == stamp  # the installation's day
    changed = sorted(day for day in days_after if days_after[day] != days_before[day])
    assert changed == ["20261019", "20261103"], changed  # not the two weeks between, which hold no water of it


def test_a_removal_card_corrected_revises_the_removal_s_period_and_day(
    exchange: tuple[str, TestClient, dict[str, str]], tmp_path: Path
) -> None:
    url, client, headers = exchange
    _n_reads(url)
    before, days_before = _as_of(client, headers), _days(client, headers)
    recorded = _correct(url, tmp_path, "final")
    after, days_after = _as_of(client, headers), _days(client, headers)
    assert datetime.fromisoformat(after[("2026-10", "M")]) == recorded
    assert {k: v for k, v in after.items() if k != ("2026-10", "M")} == {
        k: v for k, v in before.items() if k != ("2026-10", "M")
    }
    changed = sorted(day for day in days_after if days_after[day] != days_before[day])
    assert changed == ["20261019"], changed
