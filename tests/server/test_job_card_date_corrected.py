"""An exchange's job card dated wrong, corrected and METERS.csv recorded again.

An installation is known by its meter and when it was fitted, so a corrected ``installed_at`` was a
new installation of the meter: it overlapped the one recorded (the meter in two places at once), the
file was refused, and no command could correct it. With the exchange done at 09:30, not 10:30 as
typed, the old meter's removal could be moved to 09:30 (its row is known by its own installation
time) but the new meter's installation could not, and the hour between was billed to no one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from aquami.cli import app

HEADER = "meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3\n"
TYPED = HEADER + (
    "M-OLD,D1,customer,SP-1,2026-10-01T00:00Z,2026-11-10T10:30Z,100.000,110.100\n"
    "M-NEW,D1,customer,SP-1,2026-11-10T10:30Z,,0.400,\n"
)
CORRECTED = HEADER + (  # the new meter's row first: the order is the file's
    "M-NEW,D1,customer,SP-1,2026-11-10T09:30Z,,0.400,\n"
    "M-OLD,D1,customer,SP-1,2026-10-01T00:00Z,2026-11-10T09:30Z,100.000,110.100\n"
)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def test_an_exchange_dated_anew_moves_the_new_meter_s_installation_and_billing_follows(
    tmp_path: Path, migrated_database_url: str
) -> None:
    url = migrated_database_url
    (tmp_path / "typed.csv").write_text(TYPED)
    assert run("server", "register-meters", str(tmp_path / "typed.csv"), "--database-url", url)[0] == 0
    with psycopg.connect(url, autocommit=True) as conn:
        # the old meter read hourly to 09:00 (0.1 m³ an hour from 100 on 1 October), the new from 11:00
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) SELECT 'M-OLD', t, "
            "100 + 0.01 * extract(epoch FROM t - '2026-10-01T00:00Z') / 3600 "
            "FROM generate_series('2026-10-01T00:00Z'::timestamptz, '2026-11-10T09:00Z', '1 hour') t"
        )
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) SELECT 'M-NEW', t, "
            "0.4 + 0.01 * extract(epoch FROM t - '2026-11-10T09:30Z') / 3600 "
            "FROM generate_series('2026-11-10T11:00Z'::timestamptz, '2026-12-01T00:00Z', '1 hour') t"
        )
    (tmp_path / "accounts.csv").write_text(
        "account_id,name,service_point_id,start_at,end_at\nACC-1,Ann,SP-1,2026-09-01T00:00Z,\n"
    )
    assert run("server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", url)[0] == 0
    code, output = run("bill", "determinants", "--period", "2026-11", "--database-url", url)
    before = json.loads(output)["items"][0]

    (tmp_path / "corrected.csv").write_text(CORRECTED)
    code, output = run("server", "register-meters", str(tmp_path / "corrected.csv"), "--database-url", url)
    assert code == 0 and json.loads(output)["installations"] == 2, output
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT meter_id, installed_at, removed_at, initial_register_m3 FROM meter_installations "
            "ORDER BY installed_at"
        ).fetchall()
    at = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
    assert stored == [
        ("M-OLD", datetime(2026, 10, 1, tzinfo=UTC), at, Decimal("100.000")),
        ("M-NEW", at, None, Decimal("0.400")),
    ]
    code, output = run("bill", "determinants", "--period", "2026-11", "--database-url", url)
    assert code == 0, output
    account = json.loads(output)["items"][0]
    lines = {line["meter_id"]: line for line in account["lines"]}
    assert (lines["M-OLD"]["end"], lines["M-NEW"]["start"]) == ("2026-11-10T09:30:00Z", "2026-11-10T09:30:00Z")
    # the old meter from its 1 November read to its removal card, the new from its card to 1 December
    old = Decimal("110.100") - (100 + Decimal("0.01") * 31 * 24)
    new = Decimal("0.4") + Decimal("0.01") * (20 * 24 + Decimal("14.5")) - Decimal("0.400")
    assert Decimal(account["consumption_m3"]) == old + new
    assert account["as_of"] > before["as_of"]  # the period was revised, and says so


def test_a_meter_s_other_installation_or_another_meter_is_still_refused(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """The time is corrected only for an installation of the same meter at the same service point the
    row overlaps: another meter at the point, or the meter at another point, is refused as before."""
    url = migrated_database_url
    (tmp_path / "typed.csv").write_text(TYPED)
    assert run("server", "register-meters", str(tmp_path / "typed.csv"), "--database-url", url)[0] == 0
    for row in (
        "M-NEW,D1,customer,SP-2,2026-11-10T09:30Z,,0.400,\n",  # the meter at another point at once
        "M-3,D1,customer,SP-1,2026-11-11T00:00Z,,0.400,\n",  # another meter at the point at once
    ):
        (tmp_path / "then.csv").write_text(HEADER + row)
        code, output = run("server", "register-meters", str(tmp_path / "then.csv"), "--database-url", url)
        assert code == 2 and "a meter is in one place at a time" in output, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM meter_installations").fetchone() == (2,)


def test_an_exchange_dated_either_way_is_recorded_in_either_order(migrated_database_url: str) -> None:
    """The exchange moved earlier or later, its two rows in either order: the installations stored are
    the file's, one each (a step overlapping the other meter's would be refused by the database)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from server.meters.repository import OPTIONAL_INSTALLATION_COLUMNS, Installation, record_installations

    fitted = datetime(2026, 10, 1, tzinfo=UTC)
    typed = datetime(2026, 11, 10, 10, 30, tzinfo=UTC)

    @settings(max_examples=30, deadline=None)
    @given(hours=st.integers(-200, 200).filter(bool), old_first=st.booleans())
    def recorded(hours: int, old_first: bool) -> None:
        from datetime import timedelta

        at = typed + timedelta(hours=hours)
        rows = [
            Installation("M-OLD", "SP-1", "D1", fitted, at, Decimal(100), Decimal("110.1")),
            Installation("M-NEW", "SP-1", "D1", at, None, Decimal("0.4")),
        ]
        with psycopg.connect(migrated_database_url) as conn, conn.transaction(force_rollback=True):
            conn.execute(
                "INSERT INTO meters (meter_id, dma, role) VALUES ('M-OLD', 'D1', 'customer'), "
                "('M-NEW', 'D1', 'customer')"
            )
            record_installations(
                conn,
                [
                    Installation("M-OLD", "SP-1", "D1", fitted, typed, Decimal(100), Decimal("110.1")),
                    Installation("M-NEW", "SP-1", "D1", typed, None, Decimal("0.4")),
                ],
            )
            record_installations(conn, rows if old_first else rows[::-1], given=OPTIONAL_INSTALLATION_COLUMNS)
            stored = conn.execute(
                "SELECT meter_id, installed_at, removed_at FROM meter_installations ORDER BY installed_at"
            ).fetchall()
        assert stored == [("M-OLD", fitted, at), ("M-NEW", at, None)]

    recorded()
