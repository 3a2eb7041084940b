"""A job card's registers corrected late (``aquami server register-meters`` run again with the card's
``initial_register_m3`` or ``final_register_m3`` re-read) change the water billed across an exchange
without writing a read. Before server migration 0063 nothing was logged, so neither a determinant
line's ``as_of`` nor the exchange day's NEM12 UpdateDateTime moved, and a billing system that
re-imports only revised periods kept the wrong card's water. The same file recorded again moves
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app
from server.app import create_app
from server.auth import create_api_key

START = datetime(2026, 10, 18, tzinfo=UTC)
EXCHANGE = datetime(2026, 10, 19, 12, tzinfo=UTC)  # M removed, N fitted
END = datetime(2026, 10, 21, tzinfo=UTC)
HEADER = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3"
CARDS = {"initial": "0.500", "final": "104.555"}  # N's installation card, M's removal card
READS = {"account": "A-1", "from": "2026-10-18T00:00:00Z", "to": "2026-10-21T01:00:00Z", "limit": "1000"}
CORRECTED = {"initial": "0.450", "final": "104.558"}


def _meters_file(path: Path, initial: str, final: str) -> Path:
    path.write_text(
        f"{HEADER}\n"
        f"M,DMA1,customer,SP-1,2026-09-01T00:00Z,{EXCHANGE:%Y-%m-%dT%H:%MZ},,{final}\n"
        f"N,DMA1,customer,SP-1,{EXCHANGE:%Y-%m-%dT%H:%MZ},,{initial},\n",
        encoding="utf-8",
    )
    return path


def _register(url: str, path: Path) -> None:
    result = CliRunner().invoke(app, ["server", "register-meters", str(path), "--database-url", url])
    assert result.exit_code == 0, result.output


def _hourly_reads(url: str) -> None:
    """M's reads to 11:00 on the exchange day (10 L an hour from 104.500 m³), N's from 13:00 (from
    0.510 m³), each received a minute after its time."""
    hours = [START + timedelta(hours=h) for h in range(int((END - START) / timedelta(hours=1)) + 1)]
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as copy:
            for t in hours:
                steps = int((t - START) / timedelta(hours=1))
                if t < EXCHANGE:
                    copy.write_row(("M", t, Decimal("104.200") + Decimal("0.010") * steps, t + timedelta(minutes=1)))
                elif t > EXCHANGE:
                    after = int((t - EXCHANGE) / timedelta(hours=1))
                    copy.write_row(("N", t, Decimal("0.500") + Decimal("0.010") * after, t + timedelta(minutes=1)))
        conn.execute("SELECT refresh_consumption(%s, %s)", (START, END + timedelta(hours=1)))


def _stamps(text: str) -> dict[str, str]:
    """Each 300 record's day and UpdateDateTime."""
    return {f[1]: f[29] for f in (line.split(",") for line in text.splitlines()) if f[0] == "300"}


@pytest.mark.parametrize("card", ["initial", "final"])
def test_a_job_card_s_register_corrected_late_moves_as_of_and_the_exchange_day_s_update_date_time(
    migrated_database_url: str, tmp_path: Path, card: str
) -> None:
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
    with psycopg.connect(url, autocommit=True) as conn:  # the job cards entered in September, before the reads
        conn.execute("UPDATE account_membership_changes SET recorded_at = '2026-09-01Z'")
    _hourly_reads(url)
    corrected = _meters_file(tmp_path / "corrected.csv", **(CARDS | {card: CORRECTED[card]}))
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(url)) as client:

        def pulled() -> tuple[str, dict[str, str], dict[str, str], str]:
            lines = client.get("/billing/determinants?period=2026-10&account=A-1", headers=headers)
            point = client.get("/billing/nem12?period=2026-10-19/2026-10-21", headers=headers)
            account = client.get("/billing/nem12?period=2026-10-19/2026-10-21&account=A-1", headers=headers)
            assert lines.status_code == point.status_code == account.status_code == 200
            (item,) = lines.json()["items"]
            return item["as_of"], _stamps(point.text), _stamps(account.text), point.text

        as_of, point, account, file = pulled()
        copied = client.get("/billing/reads", params=READS, headers=headers).json()
        assert copied["next"] is None and len(copied["items"]) > 0
        _register(url, corrected)
        since = client.get(
            "/billing/reads", params=READS | {"changed_since": copied["next_changed_since"]}, headers=headers
        ).json()
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT max(recorded_at), count(*) FROM account_membership_changes").fetchone()
        assert row is not None
        recorded, logged = row
        revised_as_of, revised_point, revised_account, revised_file = pulled()
        _register(url, corrected)  # the same file again: the registers are as they were
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM account_membership_changes").fetchone() == (logged,)
        again = pulled()
    stamp = f"{recorded.astimezone(UTC):%Y%m%d%H%M%S}"
    assert revised_file != file  # the card's water changed
    assert as_of == "2026-10-21T00:01:00Z"  # the newest read's arrival
    assert datetime.fromisoformat(revised_as_of) == recorded  # when the correction was recorded
    assert point["20261019"] == account["20261019"] == "20261020000100"  # the day's newest read's arrival
    assert revised_point["20261019"] == revised_account["20261019"] == stamp
    # 20 October holds no card's water: its stamp stays its reads'
    assert revised_point["20261020"] == point["20261020"] == "20261021000100"
    assert again[:3] == (revised_as_of, revised_point, revised_account)
    # the reads are as they were: a billing system's copy of them has nothing to take
    assert (since["items"], since["removed"]) == ([], [])
