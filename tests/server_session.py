"""A test's database session set as the server sets each of its own (``server.db.SESSION_SETTINGS``).

A test that reads or writes what the server reads and writes (determinants, NEM12, the meter page, a
job card keyed) on a bare ``psycopg.connect`` ran with the database's JIT on, which the server's
connections turn off. In a test database the plans of the job-card triggers' consumption refresh are
estimated over tables without statistics, past ``jit_above_cost``, and LLVM compiled each of them again
at every card (150 ms of JIT in a card's 210 ms, measured with auto_explain): most of the time of the
property tests that key hundreds of cards. JIT changes how fast a plan runs, never what it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from server.db import SESSION_SETTINGS

C = TypeVar("C", bound=psycopg.Connection[Any])


def set_as_the_server(conn: C) -> C:
    """``conn``, idle, its session set as the server's are: set outside any transaction (a test's
    rollback would undo it), ``conn`` left in the autocommit mode it had."""
    autocommit = conn.autocommit
    conn.autocommit = True
    conn.execute(SESSION_SETTINGS)
    conn.autocommit = autocommit
    return conn


@contextmanager
def as_the_server(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """``conn``'s session set as the server's while the block runs (a job card keyed among a
    collector's writes), then as it was: ``conn`` in autocommit, so the settings are the session's."""
    assert conn.autocommit, "a session setting made in a transaction is undone by its rollback"
    conn.execute(SESSION_SETTINGS)
    try:
        yield
    finally:
        conn.execute("RESET TimeZone; RESET jit")
