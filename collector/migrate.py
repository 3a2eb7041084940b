"""Schema migrations: ordered SQL files per part, each applied once and recorded.

Parts are migrated in order (the collector's tables first, then the server's, which may refer to
them); within a part, files apply in name order (``0001_…sql``). Each file runs in its own
transaction together with its record in ``schema_migrations``, so a failure leaves nothing half
done, and a second run is a no-op.

A file whose first line is ``-- migrate: online index`` holds one ``CREATE INDEX name ON table
(columns);`` for a table that is written to all the time (``readings``). Built in a migration's
transaction, the index would hold every write to the table until the whole table was indexed (some
9 minutes for a year of 100,000 meters' hourly reads). It is built outside one instead: on a
TimescaleDB hypertable chunk by chunk, each chunk in its own transaction
(``timescaledb.transaction_per_chunk``), so writes wait at most for the chunk being indexed; on a
plain table (the embedded demo's PostgreSQL) with a plain ``CREATE INDEX``. A build cut short leaves
the index marked invalid; the next run drops it and builds it again. ``CREATE INDEX CONCURRENTLY``
would serve plain tables, but it waits for every older transaction in the database, a migrator
waiting for the migration lock among them: a deadlock.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

PARTS = ("collector", "server")
_LOCK_KEY = 0x61717561  # pg_advisory_xact_lock: two processes migrating at once take turns
ONLINE_INDEX = "-- migrate: online index"
_INDEX_STATEMENT = re.compile(r"CREATE INDEX (\w+) ON (\w+) (\(.+\));", re.DOTALL)


def migration_files() -> list[tuple[str, Traversable]]:
    files: list[tuple[str, Traversable]] = []
    for part in PARTS:
        folder = resources.files(part).joinpath("migrations")
        names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
        files.extend((f"{part}/{name}", folder.joinpath(name)) for name in names)
    return files


def migrate(database_url: str) -> list[str]:
    """Apply what is missing; return the names applied now (empty when up to date)."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        if up_to_date(conn):  # nothing to write: a read-only standby after a failover is fine
            return applied_now
        with conn.transaction():  # under the lock too: two migrators creating it at once collide
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))  # in the catalog (UniqueViolation)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for name, file in migration_files():
            text = file.read_text()
            if text.startswith(ONLINE_INDEX):
                if _apply_online_index(conn, name, text):
                    applied_now.append(name)
                continue
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if conn.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (name,)).fetchone():
                    continue
                log.info("applying migration %s", name)
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied_now.append(name)
    return applied_now


def _apply_online_index(conn: psycopg.Connection, name: str, text: str) -> bool:
    """Build an online index migration's index outside a transaction (see the module's docstring)
    and record it; False when another migrator recorded it first."""
    statement = " ".join(line for line in text.splitlines() if not line.startswith("--")).strip()
    match = _INDEX_STATEMENT.fullmatch(statement)
    if match is None:
        raise ValueError(f"{name}: an online index migration holds one 'CREATE INDEX name ON table (columns);'")
    index, table, columns = match.groups()
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))  # the session's: the build spans transactions
    try:
        if conn.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (name,)).fetchone():
            return False
        log.info("applying migration %s (online index)", name)
        invalid = conn.execute(
            "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid", (index,)
        ).fetchone()
        if invalid:  # left by a build cut short: it would be taken for done by IF NOT EXISTS
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
        build = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} {}").format(
            sql.Identifier(index),
            sql.Identifier(table),
            sql.SQL(columns),
        )
        if _is_hypertable(conn, table):
            build = sql.SQL("{} WITH (timescaledb.transaction_per_chunk)").format(build)
        conn.execute(build)
        conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        return True
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _is_hypertable(conn: psycopg.Connection, table: str) -> bool:
    if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return False
    row = conn.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", (table,)
    ).fetchone()
    return row is not None


#: What every part says when a table or function it needs is not there.
NOT_MIGRATED = "the database is not migrated: run `aquami collector migrate`"


def up_to_date(conn: psycopg.Connection[Any]) -> bool:
    """Whether every migration is recorded, asked without writing anything (on a connection of any
    row factory: the server's pool lends dict rows)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return False
        recorded = {name for (name,) in cur.execute("SELECT name FROM schema_migrations").fetchall()}
    return {name for name, _ in migration_files()} <= recorded
