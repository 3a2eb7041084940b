"""tests/lock_waits.py counts the lock waits of its own database only: a session of another
database (another pytest worker's test) waiting for the same advisory lock is not counted, on the
real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.lock_waits import lock_waits, waiting_for_advisory
from tests.services import create_database, drop_database

#: The consumption refreshes' turn ('cons', collector migration 0061): a key the tests wait for.
TURN = 1668247155


@pytest.fixture
def other_database(timescale_admin_url: str) -> Iterator[str]:
    """Another empty database on the same server: another worker's."""
    url = create_database(timescale_admin_url)
    try:
        yield url
    finally:
        drop_database(timescale_admin_url, url)


def _waiter(url: str, key: int) -> tuple[threading.Thread, threading.Event]:
    """A session of ``url`` waiting for the advisory lock ``key`` until it is let go (then ``done``)."""
    done = threading.Event()

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_a_wait_in_another_database_is_not_counted(database_url: str, other_database: str) -> None:
    """A session of another database waits for the turn its neighbour holds: that database's monitor
    sees it, this one's sees nothing. Counted across the server (the helpers before), this database
    seemed to have a session waiting for the turn when none of its own did."""
    with (
        psycopg.connect(other_database, autocommit=True) as holder,
        psycopg.connect(other_database, autocommit=True) as theirs,
        psycopg.connect(database_url, autocommit=True) as ours,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (TURN,))
        thread, done = _waiter(other_database, TURN)
        try:
            for _ in range(400):  # until the other database's session waits (awaited, however loaded the machine)
                if waiting_for_advisory(theirs, TURN):
                    break
                time.sleep(0.025)
            assert len(waiting_for_advisory(theirs, TURN)) == 1
            assert waiting_for_advisory(ours, TURN) == []
            assert lock_waits(ours) == []
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (TURN,))
            thread.join(30)
    assert done.is_set()


def test_a_wait_in_its_own_database_is_counted(database_url: str) -> None:
    """The same wait in the monitor's own database is seen, with its key (a guard of what the
    helpers wait for)."""
    with (
        psycopg.connect(database_url, autocommit=True) as holder,
        psycopg.connect(database_url, autocommit=True) as ours,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (TURN,))
        thread, done = _waiter(database_url, TURN)
        try:
            for _ in range(400):
                if waiting_for_advisory(ours, TURN):
                    break
                time.sleep(0.025)
            assert [(locktype, classid, objid) for _, locktype, classid, objid in lock_waits(ours)] == [
                ("advisory", 0, TURN)
            ]
            assert waiting_for_advisory(ours, TURN + 1) == []
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (TURN,))
            thread.join(30)
    assert done.is_set()
