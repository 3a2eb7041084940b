"""A move-in's date typed wrong, corrected in the customer system and the file recorded again.

An agreement is known by its service point and start, so a corrected start was a new agreement: it
overlapped the one recorded before (the same account's, at the same service point), the file was
refused as "two agreements on one service point at once", and no command could correct it. Billing
kept the wrong split: with the move dated back to 15 November (the outgoing tenant's end moved to it,
the incoming tenant's start refused), the water of 15-20 November was billed to no one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from server.accounts.register import Agreement, record_accounts

METERS = """meter_id,dma,role,service_point_id,installed_at,removed_at,initial_register_m3,final_register_m3
WM-1,D1,customer,SP-1,2026-10-01T00:00:00Z,,0,
"""
HEADER = "account_id,name,service_point_id,start_at,end_at\n"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.output


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_move_dated_back_moves_the_incoming_tenant_s_start_and_billing_follows(
    tmp_path: Path, migrated_database_url: str
) -> None:
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    with psycopg.connect(url, autocommit=True) as conn:  # 0.01 m³ an hour through November
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) SELECT 'WM-1', t, "
            "100 + 0.01 * extract(epoch FROM t - '2026-11-01T00:00Z') / 3600 "
            "FROM generate_series('2026-11-01T00:00Z'::timestamptz, '2026-12-01T00:00Z', '1 hour') t"
        )
    (tmp_path / "accounts.csv").write_text(
        HEADER + "ACC-1,Ann,SP-1,2026-10-01T00:00Z,2026-11-20T12:00Z\nACC-3,Carl,SP-1,2026-11-20T12:00Z,\n"
    )
    assert run("server", "register-accounts", str(tmp_path / "accounts.csv"), "--database-url", url)[0] == 0
    code, output = run("bill", "determinants", "--period", "2026-11", "--database-url", url)
    billed_before = json.loads(output)["items"]
    # the move was on 15 November: the incoming tenant's row listed first, as a customer system may
    (tmp_path / "corrected.csv").write_text(
        HEADER + "ACC-3,Carl,SP-1,2026-11-15T00:00Z,\nACC-1,Ann,SP-1,2026-10-01T00:00Z,2026-11-15T00:00Z\n"
    )
    code, output = run("server", "register-accounts", str(tmp_path / "corrected.csv"), "--database-url", url)
    assert code == 0 and json.loads(output) == {"accounts": 2, "agreements": 2}, output
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT account_id, start_at, end_at FROM service_agreements ORDER BY start_at"
        ).fetchall()
    assert stored == [
        ("ACC-1", _utc("2026-10-01T00:00"), _utc("2026-11-15T00:00")),
        ("ACC-3", _utc("2026-11-15T00:00"), None),
    ]
    code, output = run("bill", "determinants", "--period", "2026-11", "--database-url", url)
    assert code == 0, output
    billed = {item["account_id"]: item for item in json.loads(output)["items"]}
    # 14 days to the outgoing tenant, 16 to the incoming one: all of November's 7.2 m³, once
    assert Decimal(billed["ACC-1"]["consumption_m3"]) == Decimal("3.36")
    assert Decimal(billed["ACC-3"]["consumption_m3"]) == Decimal("3.84")
    before = {item["account_id"]: item for item in billed_before}
    assert billed["ACC-3"]["as_of"] > before["ACC-3"]["as_of"]  # the period was revised, and says so


def test_a_start_is_corrected_only_where_it_would_be_refused(tmp_path: Path, migrated_database_url: str) -> None:
    """Another account's agreement overlapped is still an overlap, refused naming the row; and an
    agreement of the same account that the file's row does not overlap is a second agreement."""
    url = migrated_database_url
    (tmp_path / "meters.csv").write_text(METERS)
    assert run("server", "register-meters", str(tmp_path / "meters.csv"), "--database-url", url)[0] == 0
    (tmp_path / "a.csv").write_text(HEADER + "ACC-1,Ann,SP-1,2026-10-01T00:00Z,2026-11-01T00:00Z\n")
    assert run("server", "register-accounts", str(tmp_path / "a.csv"), "--database-url", url)[0] == 0
    (tmp_path / "b.csv").write_text(HEADER + "ACC-2,Bob,SP-1,2026-10-15T00:00Z,\n")
    code, output = run("server", "register-accounts", str(tmp_path / "b.csv"), "--database-url", url)
    assert code == 2 and "row 2: two agreements on one service point at once" in output, output
    (tmp_path / "c.csv").write_text(HEADER + "ACC-1,Ann,SP-1,2026-12-01T00:00Z,\n")  # back a month later
    assert run("server", "register-accounts", str(tmp_path / "c.csv"), "--database-url", url)[0] == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT account_id, start_at FROM service_agreements ORDER BY start_at").fetchall() == [
            ("ACC-1", _utc("2026-10-01T00:00")),
            ("ACC-1", _utc("2026-12-01T00:00")),
        ]


DAYS = [_utc(f"2026-11-{day:02d}T00:00") for day in range(1, 29)]
RECORDED = [
    Agreement("A", "A", "SP-1", DAYS[0], DAYS[9], None),
    Agreement("B", "B", "SP-1", DAYS[9], DAYS[19], None),
    Agreement("C", "C", "SP-1", DAYS[19], None, None),
]


def test_moves_dated_either_way_are_recorded_in_any_order(migrated_database_url: str) -> None:
    """Both moves dated anew, earlier or later, the rows in any order: the agreements stored are the
    file's, one each, however each start moved (a step of the move overlapping another agreement
    would be refused by the database). Each tenancy keeps some of its days (a row that overlaps no
    agreement of its account is a new agreement, and then overlaps the one recorded, refused)."""

    b_start, b_end = RECORDED[1].start_at, RECORDED[1].end_at
    assert b_end is not None

    def keeps_some_of_b(cut: list[datetime]) -> bool:
        return cut[0] < b_end and cut[1] > b_start

    cuts = st.lists(st.sampled_from(DAYS[1:]), min_size=2, max_size=2, unique=True).map(sorted)

    @settings(max_examples=40, deadline=None)
    @given(cuts=cuts.filter(keeps_some_of_b), data=st.data())
    def recorded(cuts: list[datetime], data: st.DataObject) -> None:
        first, second = cuts
        corrected = [
            Agreement("A", "A", "SP-1", DAYS[0], first, None),
            Agreement("B", "B", "SP-1", first, second, None),
            Agreement("C", "C", "SP-1", second, None, None),
        ]
        order = data.draw(st.permutations(corrected))
        with psycopg.connect(migrated_database_url) as conn, conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-1', 'D1')")
            record_accounts(conn, RECORDED)
            assert record_accounts(conn, order) == (3, 3)
            stored = conn.execute(
                "SELECT account_id, start_at, end_at FROM service_agreements ORDER BY start_at"
            ).fetchall()
        assert stored == [(a.account_id, a.start_at, a.end_at) for a in corrected]

    recorded()
