"""While a write waits on its database, a look from a second connection at what the database does.

A busy writer is never idle, so its idle look (``database_check_s``) never runs: when its link died
(the database host gone, a NAT or a firewall that forgot the connection, a frozen proxy), the write
waited for its deadline (twice the statement timeout: 60 s by default) before it tried a new
connection (61 s before a reading that came after the link died was stored; a broker left at
Mosquitto's default queue of 1,000 messages a client dropped what came beyond it meanwhile). Nothing
on the writer's own connection can tell a slow answer from none: PostgreSQL sends nothing while it
works, and a black-holed link's packets may still be acknowledged (by a proxy, a NAT) where TCP
keepalives and ``tcp_user_timeout`` cannot see it.

The database itself can: once a write has waited ``database_check_s``, and every half of it after, a
new connection asks ``pg_stat_activity`` about the writer's own session (its process id and start,
so no other session is taken for it). A session idle (in a transaction or not) for
``database_check_s`` while the writer waits for its answer has finished what it was sent, or never
got it: the link is dead. That session is ended (``pg_terminate_backend``: the rows its transaction
holds would block the retry until the server's ``idle_in_transaction_session_timeout``) and the
writer's socket cut, so the write fails at once and is retried on a new connection, its messages
still unacknowledged.

A slow but healthy write is never cut by it: a database that works on a statement, however long (a
big batch on a loaded server, up to the statement timeout), shows it ``active``; only a writer that
sent nothing for ``database_check_s`` in the middle of a write, while its session waited, would be
(a writer thread starved of CPU that long, or one statement's bytes that long in transit: a 1 MB
list of new meters over a link under 1 Mbit/s; the write fails and is retried: nothing is lost). A
look that cannot be made (no new connection, no answer within ``database_check_s``) cuts nothing:
the write's deadline stays the bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from collector import db

log = logging.getLogger(__name__)

#: The writer's session, seen by the server: its process and when it started (a process id alone
#: may be another session's by the time of a look, after a restart).
WHO_AM_I = "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"

# One statement, so the session cannot move on between the look and its end.
_END_IF_WAITING_ON_US = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE pid = %s AND backend_start = %s
  AND state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
  AND clock_timestamp() - state_change >= make_interval(secs => %s)
"""


@dataclass(frozen=True, slots=True)
class Session:
    """A connection's session on the server: what a look asks about."""

    pid: int
    started: datetime


def session_of(conn: psycopg.Connection) -> Session | None:
    """``conn``'s session (None where the server shows it no one: no look is made then)."""
    row = conn.execute(WHO_AM_I).fetchone()
    return None if row is None or row[1] is None else Session(int(row[0]), row[1])


def waits_on_a_dead_link(database_url: str, session: Session, idle_s: float) -> bool:
    """Whether ``session`` has waited on its client ``idle_s`` or more, as a new connection sees
    it; if so it is ended. False when the look cannot be made within ``idle_s`` (said at DEBUG)."""
    try:
        with db.connect(database_url, idle_s) as side, db.deadline(side, idle_s):
            row = side.execute(_END_IF_WAITING_ON_US, (session.pid, session.started, idle_s)).fetchone()
    except psycopg.Error as error:
        log.debug("could not look at the writer's database session %d: %s", session.pid, error)
        return False
    return row is not None


@contextmanager
def deadline_looking(
    conn: psycopg.Connection, seconds: float, look_after_s: float, link_is_dead: Callable[[], bool]
) -> Iterator[None]:
    """:func:`collector.db.deadline` (``conn``'s socket cut after ``seconds``), and, after
    ``look_after_s`` and every half of it until then, ``link_is_dead()``: its socket cut
    at once when it says so. One thread, as the deadline alone had."""
    done = threading.Event()

    def watch() -> None:
        start = time.monotonic()
        look_at = start + look_after_s
        while not done.wait(max(min(start + seconds, look_at) - time.monotonic(), 0.0)):
            if time.monotonic() >= start + seconds:
                db.cut(conn, f"the database has not answered for {seconds:.0f} s")
                return
            if link_is_dead() and not done.is_set():
                db.cut(conn, f"the database has waited on this connection for {look_after_s:g} s: the link is dead")
                return
            look_at = time.monotonic() + look_after_s / 2

    watcher = threading.Thread(target=watch, name="collector-write-deadline", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
