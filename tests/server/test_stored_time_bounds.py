"""The database holds an agreement's and an installation's times to the years 1900 to 9998 in UTC
(server migration 0057), as register-accounts and register-meters do (aquami.stored_times): a time
outside them is one that a session west or east of UTC cannot load through psycopg.

Before, only the commands refused such a time: a row inserted in SQL, or stored before they refused
it, was kept, and every query meeting it failed in such a session.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from aquami.cli import app
from collector.migrate import migrate

MIGRATION = "server/0057_stored_times_within_the_years_every_session_shows.sql"
CONSTRAINTS = ("service_agreements_within_stored_years", "meter_installations_within_stored_years")


def _places(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO accounts (account_id, name) VALUES ('ACC-1', 'N')")
    conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1'), ('SP-2')")
    conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M1', true), ('M2', true)")


def _validated(conn: psycopg.Connection) -> dict[str, bool]:
    rows = conn.execute(
        "SELECT conname, convalidated FROM pg_constraint WHERE conname = ANY(%s)", (list(CONSTRAINTS),)
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    "insert",
    [
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        " VALUES ('ACC-1', 'SP-1', '0001-01-01T00:00:00Z')",
        "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
        " VALUES ('ACC-1', 'SP-1', '1899-12-31T23:59:59.999999Z')",
        "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at)"
        " VALUES ('ACC-1', 'SP-1', '2026-01-01T00:00:00Z', '9999-12-31T23:00:00Z')",
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at)"
        " VALUES ('SP-1', 'M1', '0001-01-01T00:00:00Z')",
        "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at)"
        " VALUES ('SP-1', 'M1', '2026-01-01T00:00:00Z', '9999-01-01T00:00:00Z')",
    ],
)
def test_a_time_outside_the_years_is_refused_by_the_database(migrated_database_url: str, insert: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        _places(conn)
        with pytest.raises(psycopg.errors.CheckViolation, match="within_stored_years"):
            conn.execute(insert)
        assert conn.execute("SELECT count(*) FROM service_agreements").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM meter_installations").fetchone() == (0,)
        # the years' own ends are stored
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at)"
            " VALUES ('ACC-1', 'SP-1', '1900-01-01T00:00:00Z', '9998-12-31T23:59:59.999999Z')"
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at)"
            " VALUES ('SP-1', 'M1', '1900-01-01T00:00:00Z', '9998-12-31T23:59:59.999999Z')"
        )
        assert _validated(conn) == dict.fromkeys(CONSTRAINTS, True)


def test_a_database_with_old_rows_outside_the_years_still_migrates_and_names_them(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database migrated before 0057, holding rows register-accounts and register-meters stored in
    year 1 (they took it then), migrates: the checks hold every new row, the WARNING counts the old
    ones, the view lists them, and once they are corrected validate_stored_time_bounds() validates."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:  # the database as it was before 0057
        conn.execute("DROP FUNCTION validate_stored_time_bounds()")
        conn.execute("DROP VIEW stored_times_out_of_bounds")
        for name in CONSTRAINTS:
            conn.execute(f"ALTER TABLE {name.split('_within')[0]} DROP CONSTRAINT {name}")
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (MIGRATION,))
        _places(conn)
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) VALUES"
            " ('ACC-1', 'SP-1', '0001-01-01T00:00:00Z', '2026-01-01T00:00:00Z'),"
            " ('ACC-1', 'SP-2', '2026-01-01T00:00:00Z', NULL)"
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) VALUES"
            " ('SP-1', 'M1', '2019-05-02T08:00:00Z', '9999-06-01T00:00:00Z'),"
            " ('SP-2', 'M2', '2019-05-02T08:00:00Z', NULL)"
        )

    with caplog.at_level(logging.WARNING, logger="collector.migrate"):
        assert migrate(url) == [MIGRATION]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        "1 service agreement(s) and 1 meter installation(s) have a time outside the years 1900 to 9998 in UTC"
    )
    assert "SELECT * FROM stored_times_out_of_bounds" in warning

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/Los_Angeles'")  # where year 1 could not be loaded
        assert _validated(conn) == dict.fromkeys(CONSTRAINTS, False)
        listed = conn.execute(
            "SELECT table_name, column_name, value_utc FROM stored_times_out_of_bounds ORDER BY table_name"
        ).fetchall()
        assert listed == [
            ("meter_installations", "removed_at", "9999-06-01T00:00:00.000000Z AD"),
            ("service_agreements", "start_at", "0001-01-01T00:00:00.000000Z AD"),
        ]
        # new rows are checked all the same
        with pytest.raises(psycopg.errors.CheckViolation, match="service_agreements_within_stored_years"):
            conn.execute(
                "INSERT INTO service_agreements (account_id, service_point_id, start_at)"
                " VALUES ('ACC-1', 'SP-2', '0044-03-15T00:00:00Z BC')"
            )
        assert conn.execute("SELECT validate_stored_time_bounds()").fetchone() == (False,)

        conn.execute("UPDATE service_agreements SET start_at = '2001-01-01T00:00:00Z' WHERE start_at < '1900-01-01'")
        conn.execute("UPDATE meter_installations SET removed_at = NULL WHERE removed_at >= '9999-01-01'")
        assert conn.execute("SELECT count(*) FROM stored_times_out_of_bounds").fetchone() == (0,)
        assert conn.execute("SELECT validate_stored_time_bounds()").fetchone() == (True,)
        assert _validated(conn) == dict.fromkeys(CONSTRAINTS, True)
    assert migrate(url) == []


def test_an_old_removal_outside_the_years_kept_by_a_file_recorded_again_is_refused_in_one_line(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """register-meters recording an installation again without a removed_at column keeps the one
    stored; one stored in year 9999 before migration 0057 breaks the check: a traceback
    (CheckViolation) before, now one line saying what to do, and nothing changed."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:  # stored before 0057: the check added NOT VALID
        [(check,)] = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", (CONSTRAINTS[1],)
        ).fetchall()
        conn.execute(f"ALTER TABLE meter_installations DROP CONSTRAINT {CONSTRAINTS[1]}")
        _places(conn)
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at)"
            " VALUES ('SP-1', 'M1', '2019-05-02T08:00:00Z', '9999-06-01T00:00:00Z')"
        )
        conn.execute(f"ALTER TABLE meter_installations ADD CONSTRAINT {CONSTRAINTS[1]} {check} NOT VALID")
    path = tmp_path / "m.csv"
    path.write_text("meter_id,dma,role,service_point_id,installed_at\nM1,D1,customer,SP-2,2019-05-02T08:00:00Z\n")
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["server", "register-meters", str(path), "--database-url", url]
    )
    assert result.exit_code == 2, result.output
    assert "keeps a removal stored outside the years 1900 to 9998 in UTC" in result.output
    assert "SELECT * FROM stored_times_out_of_bounds" in result.output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT service_point_id FROM meter_installations").fetchall() == [("SP-1",)]
