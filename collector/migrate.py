"""Schema migrations: ordered SQL files per part, each applied once and recorded.

Parts are migrated in order (the collector's tables first, then the server's, which may refer to
them); within a part, files apply in name order (``0001_…sql``). Each file runs in its own
transaction together with its record in ``schema_migrations``, so a failure leaves nothing half
done, and a second run is a no-op.
"""

from __future__ import annotations

import logging
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg

log = logging.getLogger(__name__)

PARTS = ("collector", "server")
_LOCK_KEY = 0x61717561  # pg_advisory_xact_lock: two processes migrating at once take turns


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
        if _up_to_date(conn):  # nothing to write: a read-only standby after a failover is fine
            return applied_now
        with conn.transaction():  # under the lock too: two migrators creating it at once collide
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))  # in the catalog (UniqueViolation)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for name, file in migration_files():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if conn.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (name,)).fetchone():
                    continue
                log.info("applying migration %s", name)
                conn.execute(file.read_text().encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied_now.append(name)
    return applied_now


def _up_to_date(conn: psycopg.Connection) -> bool:
    """Whether every migration is recorded, asked without writing anything."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return False
    recorded = {name for (name,) in conn.execute("SELECT name FROM schema_migrations").fetchall()}
    return {name for name, _ in migration_files()} <= recorded
