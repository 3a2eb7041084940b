"""Rows read as tuples whatever row factory the caller's connection has.

The server's pool lends connections that make dicts (server.db: ``dict_row``), the commands and the
tests connect with psycopg's default tuples, and a module taking either connection read every row
both ways (``row["name"] if isinstance(row, dict) else row[0]``, nine times in server.auth and
server.sign_in_links). Its queries now run on a cursor of their own with ``tuple_row``: one reading,
on any connection.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg.abc import Params
from psycopg.rows import tuple_row

__all__ = ["all_rows", "one_row"]


def one_row(conn: psycopg.Connection[Any], query: LiteralString, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row ``query`` returns, as a tuple; None for none."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        return cursor.execute(query, params).fetchone()


def all_rows(conn: psycopg.Connection[Any], query: LiteralString, params: Params = ()) -> list[tuple[Any, ...]]:
    """Every row ``query`` returns, as tuples."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        return cursor.execute(query, params).fetchall()
