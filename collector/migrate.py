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

Each record carries the SHA-256 of the file it applied. A file edited after a database applied it
(a fix to an old migration, a merge gone wrong) would otherwise go unnoticed: the database would be
"up to date" with a schema a fresh one does not have. Such a database is refused, naming the file,
as Flyway and sqlx do: put the change in a new migration, and restore the file as it was. So is a
database that records migrations the code does not have (code older than its database).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from collector import db

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


class SchemaMismatch(RuntimeError):
    """The database's record of its migrations contradicts this code's files: applying what is
    missing cannot mend that, so nothing is applied."""


def checksum(data: bytes) -> str:
    """SHA-256 of a migration file's bytes, with CRLF taken as LF: a checkout that converts line
    endings (git's autocrlf on Windows) changes no statement, and must not read as an edit."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def migrate(database_url: str) -> list[str]:
    """Apply what is missing; return the names applied now (empty when up to date). Raises
    SchemaMismatch, having changed nothing, when a recorded migration's file has been edited since
    or the database records migrations this code does not have."""
    applied_now: list[str] = []
    files = [(name, file.read_bytes()) for name, file in migration_files()]
    # bounded connect and keepalives as the writer's (a host that froze is given up, and `collector run`
    # says so and tries again), but no statement timeout: an index build or a backfill may take many
    # minutes, and a migrator waits its turn behind another's for as long as that takes
    with db.connect(database_url, statement_timeout_s=0) as conn:
        conn.autocommit = True
        conn.add_notice_handler(_relay_warning)
        found = _compare(conn, files)
        if found is not None:
            found.refuse_a_mismatch()
            if not found.missing and not found.unchecked:  # nothing to write: a read-only standby is fine
                return applied_now
        with conn.transaction():  # under the lock too: two migrators creating it at once collide
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))  # in the catalog (UniqueViolation)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), checksum text)"
            )
            _record_checksums_of_old_records(conn, files)
        for name, data in files:
            text = data.decode("utf-8")
            if text.startswith(ONLINE_INDEX):
                if _apply_online_index(conn, name, text, checksum(data)):
                    applied_now.append(name)
                continue
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if conn.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (name,)).fetchone():
                    continue
                log.info("applying migration %s", name)
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)", (name, checksum(data)))
                applied_now.append(name)
    return applied_now


def _relay_warning(notice: psycopg.errors.Diagnostic) -> None:
    """A migration's WARNING (rows it found that an operator must correct: server migration 0057's
    times outside the years every session shows) goes to the log, which ``aquami collector migrate``
    writes to stderr; psycopg drops a notice no handler takes."""
    if notice.severity_nonlocalized == "WARNING":
        log.warning("%s", notice.message_primary)


def _record_checksums_of_old_records(conn: psycopg.Connection, files: list[tuple[str, bytes]]) -> None:
    """Give the records made before checksums were (an aquami from before 2026-12-05) their files'
    checksums, and refuse a mismatch among the rest; in the migration lock's transaction.

    The contents those records applied cannot be known now: the files as they are now are taken
    for them, so an edit made before this first run goes unnoticed (it is trusted once); every edit
    after it is refused."""
    if not _has_checksums(conn):
        conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
    found = _compare(conn, files)  # again, under the lock: another migrator may have recorded more
    assert found is not None  # the table was made above
    found.refuse_a_mismatch()
    for name, data in files:
        conn.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE name = %s AND checksum IS NULL", (checksum(data), name)
        )


def _apply_online_index(conn: psycopg.Connection, name: str, text: str, digest: str) -> bool:
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
        conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)", (name, digest))
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


@dataclass(frozen=True)
class _Comparison:
    """The database's record of its migrations against this code's files."""

    #: the code's migrations the database has not applied
    missing: list[str]
    #: migrations the database has applied that this code does not have: the database is newer
    unknown: list[str]
    #: migrations whose file has changed since the database applied it
    edited: list[str]
    #: whether some records carry no checksum (made before checksums were): migrate() fills them in
    unchecked: bool

    def mismatch(self) -> str | None:
        """What applying the missing migrations cannot mend, said for the person who must."""
        if self.unknown:  # a rollback after an upgrade, a host left on the old release: its code
            # would run on tables and rules it does not know (a column it leaves empty, a check it breaks)
            return (
                f"the database is newer than this aquami: it has migrations {', '.join(self.unknown)} "
                "this code does not know; run the aquami release that applied them, or a newer one"
            )
        if self.edited:
            return (
                f"migration {', '.join(self.edited)} has changed since the database applied it (its SHA-256 "
                "differs from the one recorded): restore the file as it was, and make the change a new migration"
            )
        return None

    def refuse_a_mismatch(self) -> None:
        said = self.mismatch()
        if said is not None:
            raise SchemaMismatch(said)


def _compare(conn: psycopg.Connection[Any], files: list[tuple[str, bytes]]) -> _Comparison | None:
    """None when the database has no record at all (never migrated); read only, on a connection of any
    row factory (the server's pool lends dict rows)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return None
        if _has_checksums(conn):
            query = "SELECT name, checksum FROM schema_migrations"
        else:  # recorded by an aquami from before checksums
            query = "SELECT name, NULL FROM schema_migrations"
        recorded: dict[str, str | None] = dict(cur.execute(query).fetchall())
    edited = [name for name, data in files if recorded.get(name) is not None and recorded[name] != checksum(data)]
    names = {name for name, _ in files}
    return _Comparison(
        missing=[name for name, _ in files if name not in recorded],
        unknown=sorted(name for name in recorded if name not in names),
        edited=edited,
        unchecked=any(value is None for value in recorded.values()),
    )


def _has_checksums(conn: psycopg.Connection[Any]) -> bool:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass"
            " AND attname = 'checksum' AND NOT attisdropped"
        ).fetchone()
    return row is not None


def schema_problem(conn: psycopg.Connection[Any]) -> str | None:
    """What stands between this code and the database, asked without writing anything: the database
    newer than the code, a migration edited since the database applied it, or migrations not applied
    (NOT_MIGRATED); None when none.
    Records made before checksums were are taken as they stand until migrate() fills them in."""
    found = _compare(conn, [(name, file.read_bytes()) for name, file in migration_files()])
    if found is None:
        return NOT_MIGRATED
    return found.mismatch() or (NOT_MIGRATED if found.missing else None)
