"""Migrations: ordered, recorded, a second run is a no-op; readings is a hypertable on TimescaleDB."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from collector.migrate import migrate, migration_files
from tests.services import create_database, drop_database


def test_migrations_apply_once_in_order_and_rerun_is_a_no_op(database_url):
    names = [name for name, _ in migration_files()]
    assert names == sorted(names, key=lambda n: (["collector", "server"].index(n.split("/")[0]), n))
    assert migrate(database_url) == names
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        recorded = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY applied_at, name")]
    assert sorted(recorded) == sorted(names)


def test_readings_is_a_timescaledb_hypertable(migrated_database_url):
    with psycopg.connect(migrated_database_url) as conn:
        row = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
        ).fetchone()
    assert row == ("readings",)


def test_a_failing_migration_leaves_nothing_half_done(database_url, monkeypatch, tmp_path):
    import collector.migrate as migrate_module

    good = tmp_path / "0001_good.sql"
    good.write_text("CREATE TABLE good (id int);")
    bad = tmp_path / "0002_bad.sql"
    bad.write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [("t/0001_good.sql", good), ("t/0002_bad.sql", bad)])
    try:
        migrate_module.migrate(database_url)
    except psycopg.Error:
        pass
    else:
        raise AssertionError("the bad migration should have failed")
    with psycopg.connect(database_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        recorded = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    assert "good" in tables and "half" not in tables
    assert recorded == {"t/0001_good.sql"}


def test_migrators_starting_at_once_on_a_fresh_database_take_turns(timescale_admin_url):
    """Collectors of a shared group started together against a new database: each created the
    schema_migrations table outside the lock, the catalog refused the second (UniqueViolation, in
    7 of 10 tries with two), and that collector exited."""
    names = [name for name, _ in migration_files()]
    for _ in range(4):
        url = create_database(timescale_admin_url)
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                applied = list(pool.map(migrate, [url] * 4))
        finally:
            drop_database(timescale_admin_url, url)
        assert sorted(name for part in applied for name in part) == sorted(names)  # each once, none failed


def test_an_up_to_date_database_that_is_read_only_is_migrated_without_a_write(migrated_database_url):
    """A collector restarting during a failover finds the database back as a read-only standby:
    migrate() created schema_migrations 'if not exists' all the same, PostgreSQL refused it in a
    read-only transaction, and the collector exited instead of waiting."""
    name = psycopg.conninfo.conninfo_to_dict(migrated_database_url)["dbname"]
    with psycopg.connect(migrated_database_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        assert migrate(migrated_database_url) == []
    finally:
        with psycopg.connect(migrated_database_url, autocommit=True) as admin:
            admin.execute("SET default_transaction_read_only = off")
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
