"""One moment of the database for a page read in several queries.

The server's pooled connections are autocommit (server.db): each query sees the database as it is
when that query starts. A page built from several queries (the meter page: the meter, its alerts and
their enquiries, its readings, the daily chart, where it is fitted) could then show parts from either
side of a collector write or a VEE refresh committed between two of them: a reading listed that the
chart's days do not count yet, an alert listed whose enquiry is not. :func:`one_moment` reads them
all in one read-only REPEATABLE READ transaction, so every query sees the snapshot its first took.

Nothing is set on the connection itself: the isolation level and read-only are the transaction's own,
said in the statement that opens it (``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY``), so the
connection goes back to the pool autocommit and read-write, as the next request (which may write) takes
it. Before, psycopg's ``conn.transaction()`` sent ``BEGIN`` and a ``SET TRANSACTION`` followed: a round
trip more for every page read in one moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakSet

import psycopg
from psycopg.pq import TransactionStatus

#: The connections inside a :func:`one_moment` block now: a block within one reads in its moment.
_IN_ONE_MOMENT: WeakSet[psycopg.Connection[Any]] = WeakSet()


@contextmanager
def one_moment(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The block's queries on ``conn`` in one read-only REPEATABLE READ transaction: all see the
    database as of the first one. A write in the block fails (ReadOnlySqlTransaction): do any before.
    ``conn`` must be an autocommit connection outside a transaction, as the pool lends them; within
    one, the isolation level could no longer be chosen (PostgreSQL takes it before the first query).
    A block within another's (a page's, around a repository function that reads in one moment itself:
    server.care.repository.get_enquiry) reads in the outer block's moment."""
    if conn in _IN_ONE_MOMENT:
        yield
        return
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("one_moment needs an autocommit connection outside a transaction (the pool's)")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    _IN_ONE_MOMENT.add(conn)
    try:
        yield
    except BaseException:
        if conn.info.transaction_status != TransactionStatus.UNKNOWN:  # (a connection lost has none to end)
            conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
    finally:
        _IN_ONE_MOMENT.discard(conn)
