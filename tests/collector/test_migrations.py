"""Migrations: ordered, recorded, a second run is a no-op; readings is a hypertable on TimescaleDB."""

from __future__ import annotations

import time
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


def test_the_received_at_index_is_built_chunk_by_chunk_while_readings_are_written(database_url, monkeypatch):
    """Upgrading a populated database: built in a migration's transaction, the readings.received_at
    index held every write to readings until all of it was indexed. Built chunk by chunk, a write to
    one chunk goes through while the build waits on another (a reader holding the oldest chunk)."""
    import collector.migrate as migrate_module

    every = migration_files()
    index_migration = "collector/0062_readings_received_at_index.sql"
    assert index_migration in [name for name, _ in every]
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [f for f in every if f[0] != index_migration])
    migrate_module.migrate(database_url)  # the release before: no index yet
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES ('WM-1')")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) SELECT 'WM-1', t, 1"
            " FROM generate_series(now() - interval '40 days', now(), interval '1 hour') t"
        )
        oldest_chunk = conn.execute("SELECT show_chunks('readings') ORDER BY 1 LIMIT 1").fetchone()
    assert oldest_chunk is not None
    monkeypatch.setattr(migrate_module, "migration_files", lambda: every)
    # the holder goes first on the way out (a failed check must not leave the build waiting on it)
    with ThreadPoolExecutor(max_workers=1) as pool, psycopg.connect(database_url) as holder:
        holder.execute(f"LOCK TABLE {oldest_chunk[0]} IN ROW EXCLUSIVE MODE")  # a write in flight there
        upgrade = pool.submit(migrate_module.migrate, database_url)
        with psycopg.connect(database_url, autocommit=True) as watcher:
            watcher_waits = (
                "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = %s::regclass AND mode = 'ShareLock'"
            )
            deadline = time.monotonic() + 30
            while not watcher.execute(watcher_waits, (oldest_chunk[0],)).fetchone():
                assert time.monotonic() < deadline and not upgrade.done(), "the build never waited on the chunk"
                time.sleep(0.05)
            watcher.execute("SET lock_timeout = '5s'")
            watcher.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('WM-1', now() + interval '1 s', 2)")
        holder.rollback()
        assert upgrade.result(timeout=60) == [index_migration]
    with psycopg.connect(database_url) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'readings_received_at_idx'::regclass"
        ).fetchone()
        chunks = conn.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
        indexed = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%%readings_received_at_idx%%'"
            " AND schemaname = '_timescaledb_internal'"
        ).fetchone()
    assert valid == (True,)
    assert chunks is not None and indexed == chunks  # every chunk has its copy of the index
    assert migrate_module.migrate(database_url) == []


def test_an_online_index_cut_short_is_built_again(migrated_database_url):
    """A build cut short leaves the index marked invalid; the next run drops and rebuilds it rather
    than take it for done."""
    from collector.migrate import migrate

    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'readings_received_at_idx'::regclass")
        conn.execute("DELETE FROM schema_migrations WHERE name = 'collector/0062_readings_received_at_index.sql'")
    assert migrate(migrated_database_url) == ["collector/0062_readings_received_at_index.sql"]
    with psycopg.connect(migrated_database_url) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'readings_received_at_idx'::regclass"
        ).fetchone()
    assert valid == (True,)
