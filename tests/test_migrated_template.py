"""A test's migrated database is a copy of its worker's migrated template (tests/services.py): the
copy must be the database that running every migration into an empty one gives, TimescaleDB's
catalog included, and a template must never stand for migrations other than this code's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

import collector.migrate as migrate_module
from collector.migrate import migrate
from tests.services import (
    TEMPLATE_ABANDONED_AFTER_S,
    create_database,
    create_migrated_template,
    drop_database,
    drop_template,
    migrations_digest,
    template_created,
    template_name,
)

# What a migrated database is, read from its catalog: every row is text, so two databases compare
# with ==. Object ids are left out (a copy keeps them, a fresh database has its own); names and
# definitions are what a test sees.
CATALOG: dict[str, str] = {
    "migrations": "SELECT name, checksum FROM schema_migrations ORDER BY name",
    "columns": """
        SELECT table_schema, table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
        FROM information_schema.columns
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE '\\_timescaledb%'
        ORDER BY 1, 2, 3""",
    "constraints": """
        SELECT n.nspname, r.relname, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = 'public' ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY 1, 2, 3""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p') ORDER BY 1, 2""",
    "triggers": """
        SELECT r.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal ORDER BY 1, 2""",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    # ALTER DATABASE … SET is not copied by CREATE DATABASE … TEMPLATE: a migration that made one would differ
    "database_settings": """
        SELECT coalesce(setconfig::text, '') FROM pg_db_role_setting
        WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())""",
    "hypertables": """
        SELECT hypertable_schema, hypertable_name, num_dimensions, num_chunks, compression_enabled
        FROM timescaledb_information.hypertables ORDER BY 1, 2""",
    "dimensions": """
        SELECT hypertable_name, column_name, dimension_type, time_interval::text
        FROM timescaledb_information.dimensions ORDER BY 1, 2""",
    "continuous_aggregates": """
        SELECT view_name, view_definition FROM timescaledb_information.continuous_aggregates ORDER BY 1""",
    "jobs": """
        SELECT application_name, proc_schema, proc_name, schedule_interval::text, coalesce(config::text, ''),
               coalesce(hypertable_name, '')
        FROM timescaledb_information.jobs ORDER BY 1""",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {what: conn.execute(query).fetchall() for what, query in CATALOG.items()}


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the migrations put in the public tables (seed rows), in a stable order. A column that
    defaults to now() (schema_migrations.applied_at, utility_settings.changed_at) says when the row
    was written, which in a copy is when its template was made: it is left out, and only it."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url) as conn:
        columns: dict[str, list[str]] = {}
        for table, column, default in conn.execute(
            "SELECT table_name, column_name, column_default FROM information_schema.columns"
            " WHERE table_schema = 'public'"
            " AND table_name IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public')"
            " ORDER BY table_name, ordinal_position"
        ):
            if default != "now()":
                columns.setdefault(table, []).append(column)
        for table, kept in columns.items():
            query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in kept), sql.Identifier(table)
            )
            rows[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return rows


@pytest.fixture
def copied_and_migrated(
    timescale_admin_url: str, migrated_template: str, migrated_database_url: str
) -> Iterator[tuple[str, str]]:
    """(a copy of the worker's template, a database migrated for real now)."""
    fresh = create_database(timescale_admin_url)
    try:
        migrate(fresh)
        yield migrated_database_url, fresh
    finally:
        drop_database(timescale_admin_url, fresh)


def test_a_copy_of_the_template_is_the_database_migrating_gives(copied_and_migrated: tuple[str, str]) -> None:
    copy, fresh = copied_and_migrated
    copied = catalog(copy)
    assert copied == catalog(fresh)
    # not alike by being empty: the migrations make all of these (no continuous aggregate: migration 0016;
    # no database setting)
    assert [what for what, rows in copied.items() if not rows] == ["database_settings", "continuous_aggregates"]
    assert len(copied["migrations"]) == len(migrate_module.migration_files())
    assert ("public", "readings") in [row[:2] for row in copied["hypertables"]]
    assert table_rows(copy) == table_rows(fresh)


def test_a_second_migrate_on_a_copy_applies_nothing(migrated_database_url: str) -> None:
    assert migrate(migrated_database_url) == []


def test_timescaledb_works_in_a_copy_readings_go_to_a_new_chunk(copied_and_migrated: tuple[str, str]) -> None:
    """The copied catalog is alive, not merely alike: a reading in a copy makes a chunk there (and
    only there), as in the migrated database."""
    copy, fresh = copied_and_migrated
    with psycopg.connect(copy) as conn:
        before = conn.execute("SELECT count(*) FROM timescaledb_information.chunks").fetchone()
        conn.execute("CREATE TABLE chunk_probe (ts timestamptz NOT NULL, v int)")
        conn.execute("SELECT create_hypertable('chunk_probe', 'ts')")
        conn.execute("INSERT INTO chunk_probe VALUES (%s, 1)", (datetime(2026, 12, 1, tzinfo=UTC),))
        after = conn.execute("SELECT count(*) FROM timescaledb_information.chunks").fetchone()
    assert before is not None and after is not None and after[0] == before[0] + 1
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT to_regclass('chunk_probe')").fetchone() == (None,)


def test_the_template_is_a_template_no_one_may_connect_to(timescale_admin_url: str, migrated_template: str) -> None:
    """TimescaleDB's scheduler connects to each database with the extension; connected to the template,
    it would make every copy fail ("source database is being accessed by other users")."""
    with psycopg.connect(timescale_admin_url) as conn:
        flags = conn.execute(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = %s", (migrated_template,)
        ).fetchone()
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (migrated_template,)
        ).fetchone()
    assert flags == (True, False)
    assert sessions == (0,)


def test_a_template_is_named_by_the_migrations_so_an_edited_one_is_never_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = tmp_path / "0001_a.sql"
    first.write_text("CREATE TABLE a (id int);")
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [("t/0001_a.sql", first)])
    before = migrations_digest()
    assert template_name("gw0", 1_700_000_000).startswith(f"aquami_template_{before[:12]}_")
    first.write_text("CREATE TABLE a (id bigint);")
    edited = migrations_digest()
    second = tmp_path / "0002_b.sql"
    second.write_text("CREATE TABLE b (id int);")
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [("t/0001_a.sql", first), ("t/0002_b.sql", second)])
    added = migrations_digest()
    assert len({before[:12], edited[:12], added[:12]}) == 3
    first.write_bytes(b"CREATE TABLE a (id bigint);\r\n")
    second.write_bytes(b"CREATE TABLE b (id int);")
    crlf = migrations_digest()
    first.write_bytes(b"CREATE TABLE a (id bigint);\n")
    assert crlf == migrations_digest()  # the line endings of a checkout are no edit (collector.migrate.checksum)


@given(worker=st.text(max_size=20), created=st.integers(min_value=0, max_value=2**33))
def test_a_template_s_name_says_when_it_was_made_and_fits_postgresql(worker: str, created: int) -> None:
    name = template_name(worker, created)
    assert len(name.encode()) <= 63  # PostgreSQL cuts longer names, and the copy would name another
    assert template_created(name) == created


def test_a_name_that_is_not_a_template_s_is_never_dropped(timescale_admin_url: str, database_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    assert template_created(str(name)) is None
    with pytest.raises(ValueError, match="not a test template database"):
        drop_template(timescale_admin_url, str(name))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_template_abandoned_by_a_killed_run_is_dropped_by_the_next(timescale_admin_url: str) -> None:
    abandoned = template_name("gw9", time.time() - TEMPLATE_ABANDONED_AFTER_S - 60)
    recent = template_name("gw9", time.time() - 60)  # another run's, still in use
    with psycopg.connect(timescale_admin_url, autocommit=True) as conn:
        for name in (abandoned, recent):
            conn.execute(
                sql.SQL("CREATE DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
    made = create_migrated_template(timescale_admin_url, "gw9")
    try:
        with psycopg.connect(timescale_admin_url) as conn:
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert abandoned not in names
        assert {recent, made} <= names
    finally:
        for name in (abandoned, recent, made):
            drop_template(timescale_admin_url, name)
