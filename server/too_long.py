"""A value too long for one of PostgreSQL's indexes: a 422 naming it, not a lost connection.

PostgreSQL refuses a btree index entry over 2,704 bytes (``ProgramLimitExceeded``, SQLSTATE
54000). aquami bounds what its writers store now (identifiers at most 64 characters, districts
500), but a database from before may hold longer values: a meter id of 2,680 bytes that do not
compress is in ``meters`` and ``readings`` (their indexes take it), and correcting one of its
readings writes the version replaced to ``reading_history``, whose index does not. psycopg counts
that error an ``OperationalError``, which the API answered as a lost connection: a 503 "the
database connection was lost; try again shortly" with Retry-After, which a client retries for
ever. The request's transaction is rolled back either way, so nothing of it is stored; the answer
now says what was too long, by the index's table and text columns, asked of the database."""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import ConnectionPool

from server.db import lent
from server.problems import Problem

log = logging.getLogger(__name__)

#: How long the answer waits for a connection to ask the index's columns (else it names the index only).
COLUMNS_WAIT_S = 1.0

_TEXT_COLUMNS = """
SELECT a.attname FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, position)
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
WHERE i.relname = %s AND n.nspname = coalesce(%s, current_schema())
  AND a.atttypid IN ('text'::regtype, 'text[]'::regtype, 'varchar'::regtype, 'jsonb'::regtype)
ORDER BY k.position
"""


def indexed_text_columns(pool: ConnectionPool | None, schema: str | None, index: str) -> list[str]:
    """The text columns ``index`` holds (one of them was too long), or none when they cannot be asked."""
    if pool is None:
        return []
    try:
        with lent(pool, COLUMNS_WAIT_S) as conn:
            return [row["attname"] for row in conn.execute(_TEXT_COLUMNS, (index, schema)).fetchall()]
    except Exception:  # the answer goes out naming the index alone
        log.warning("could not ask which columns index %s holds", index, exc_info=True)
        return []


def value_too_long(error: psycopg.errors.ProgramLimitExceeded, columns: list[str]) -> Problem:
    """422 naming the index PostgreSQL refused an entry of, its table and text columns."""
    diag = error.diag
    index, table = diag.constraint_name, diag.table_name
    if index is None or table is None:  # another limit than an index's (too many columns, a too-large array)
        detail = f"a value is too long for the database: {diag.message_primary or error}; nothing was stored"
        return Problem(422, detail, title="Value too long")
    what = f"{table}.{' or '.join(columns)}" if columns else f"a value of {table}"
    detail = (
        f"{what} is too long for the database's index {index} ({diag.message_primary}); nothing was stored: "
        "a value stored before aquami bounded it (a meter id over 64 characters, a district over 500) "
        "must be registered again shorter"
    )
    return Problem(422, detail, title="Value too long", table=table, index=index, columns=columns)
