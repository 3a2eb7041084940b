"""Migrations: ordered, recorded, a second run is a no-op; readings is a hypertable on TimescaleDB."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from collector.migrate import SchemaMismatch, migrate, migration_files, schema_problem
from tests.services import create_database, drop_database


@pytest.fixture
def migrated_database_url(freshly_migrated_database_url: str) -> str:
    """Migrated for real here, not copied from the worker's template: these are tests of migrating."""
    return freshly_migrated_database_url


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
                "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = %s::regclass AND mode = 'ShareLock' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
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


def _migrations_in(folder: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """migrate() and schema_problem() read these files of ``folder`` (as part ``t``) instead of aquami's."""
    import collector.migrate as migrate_module

    monkeypatch.setattr(migrate_module, "migration_files", lambda: [(f"t/{name}", folder / name) for name in names])


def test_a_migration_edited_after_the_database_applied_it_is_refused(database_url, monkeypatch, tmp_path):
    """schema_migrations recorded names only: a file edited after a database applied it went unnoticed,
    and the database was 'up to date' with a schema a fresh one does not have."""
    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\n")
    (tmp_path / "0002_b.sql").write_bytes(b"CREATE TABLE b (id int);\n")
    _migrations_in(tmp_path, monkeypatch, "0001_a.sql", "0002_b.sql")
    assert migrate(database_url) == ["t/0001_a.sql", "t/0002_b.sql"]

    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id bigint);\n")  # edited since
    (tmp_path / "0003_c.sql").write_bytes(b"CREATE TABLE c (id int);\n")
    _migrations_in(tmp_path, monkeypatch, "0001_a.sql", "0002_b.sql", "0003_c.sql")
    with pytest.raises(SchemaMismatch, match=r"migration t/0001_a\.sql has changed since the database applied it"):
        migrate(database_url)
    with psycopg.connect(database_url) as conn:
        assert schema_problem(conn) is not None
        assert "t/0001_a.sql" in (schema_problem(conn) or "")
        recorded = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        assert conn.execute("SELECT to_regclass('c')").fetchone() == (None,)  # nothing applied after the refusal
    assert recorded == {"t/0001_a.sql", "t/0002_b.sql"}

    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\r\n")  # restored; checked out with CRLF
    assert migrate(database_url) == ["t/0003_c.sql"]


def test_records_made_before_checksums_get_their_files_checksums_and_edits_after_are_refused(
    database_url, monkeypatch, tmp_path
):
    """A database migrated by an aquami from before checksums has none: its records take the files'
    checksums as they are at the first migrate() by this code (what they applied cannot be known);
    an edit after that is refused."""
    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\n")
    _migrations_in(tmp_path, monkeypatch, "0001_a.sql")
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE schema_migrations DROP COLUMN checksum")  # as the release before left it
        assert schema_problem(conn) is None  # nothing to compare yet: the server serves it
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT checksum FROM schema_migrations").fetchall() == [
            (hashlib.sha256(b"CREATE TABLE a (id int);\n").hexdigest(),)
        ]
    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id bigint);\n")
    with pytest.raises(SchemaMismatch, match=r"t/0001_a\.sql"):
        migrate(database_url)


def test_the_server_and_the_cli_refuse_a_database_whose_migration_has_changed(migrated_database_url):
    """Said in one line, naming the file; the server does not start."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    changed = "collector/0001_readings.sql"
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE name = %s", (changed,))
    command = [str(Path(sys.executable).with_name("aquami")), "collector", "migrate"]
    result = subprocess.run(
        [*command, "--database-url", migrated_database_url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout
    assert f"error: database: migration {changed} has changed since the database applied it" in result.stderr
    assert "Traceback" not in result.stderr
    with (
        pytest.raises(RuntimeError, match=f"migration {changed} has changed"),
        TestClient(create_app(migrated_database_url)),
    ):
        pass


def test_a_database_newer_than_the_code_is_refused(database_url, monkeypatch, tmp_path):
    """Code older than its database (a rollback after an upgrade, a host left on the old release)
    ran on it without a word: the check asked only that the code's migrations be recorded."""
    for name in ("0001_a.sql", "0002_b.sql", "0003_c.sql"):
        (tmp_path / name).write_bytes(f"CREATE TABLE {name[5]} (id int);\n".encode())
    _migrations_in(tmp_path, monkeypatch, "0001_a.sql", "0002_b.sql")
    migrate(database_url)
    _migrations_in(tmp_path, monkeypatch, "0001_a.sql", "0003_c.sql")  # lacks b, which the database applied
    says = "the database is newer than this aquami: it has migrations t/0002_b.sql this code does not know"
    with pytest.raises(SchemaMismatch, match=says):
        migrate(database_url)
    with psycopg.connect(database_url) as conn:
        assert schema_problem(conn) is not None
        assert (schema_problem(conn) or "").startswith(says)
        assert conn.execute("SELECT to_regclass('c')").fetchone() == (None,)  # nothing applied


def test_the_server_and_the_cli_refuse_a_database_newer_than_the_code(migrated_database_url):
    from fastapi.testclient import TestClient

    from server.app import create_app

    newer = "collector/0099_from_a_newer_release.sql"
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, repeat('0', 64))", (newer,))
    says = f"the database is newer than this aquami: it has migrations {newer} this code does not know"
    command = [str(Path(sys.executable).with_name("aquami")), "collector", "migrate"]
    result = subprocess.run(
        [*command, "--database-url", migrated_database_url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout
    assert f"error: database: {says}" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(RuntimeError, match=says), TestClient(create_app(migrated_database_url)):
        pass


def test_migrate_gives_up_on_a_database_host_that_never_answers(monkeypatch):
    """migrate() connected with no timeout: a host that takes the connection but never answers (a
    frozen proxy or pooler in front of the database) held `collector run` at start-up for ever, with
    no log line. Now the connect is bounded as the writer's is, and the error is one `collector run`
    logs and retries on."""
    from collector import db

    monkeypatch.setitem(db.CONNECTION_DEFAULTS, "connect_timeout", 2)
    outcome: list[BaseException] = []

    def run(url: str) -> None:
        try:
            migrate(url)
        except BaseException as error:
            outcome.append(error)

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the kernel does), never answers
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/x"
        attempt = threading.Thread(target=run, args=(url,), daemon=True)  # daemon: a test that failed ends
        attempt.start()
        attempt.join(timeout=120)  # far past the 2 s; without a bound it waits as long as the host is silent
        assert not attempt.is_alive(), "migrate() is still waiting on a host that never answers"
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.OperationalError), outcome
