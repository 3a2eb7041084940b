"""How the collector's writer connects to PostgreSQL: every wait is bounded.

A database host that freezes or loses power sends no RST: without limits a connection waits on it
for hours (the collector stored nothing and logged nothing for as long as the proof ran). Here a
connection attempt gives up after ``CONNECT_TIMEOUT_S``; TCP keepalives find an idle connection
whose peer is gone within about 25 s, and ``tcp_user_timeout`` one whose sent data goes
unacknowledged for 30 s; the server cancels a statement after ``STATEMENT_TIMEOUT_S``. A peer that
still acknowledges but never answers (a frozen proxy or pooler in between) escapes all of those:
:func:`deadline` cuts the connection's socket from a timer, around a write and around a new
connection's setup (before, a peer silent between accepting the connection and answering its first
statement held the writer for ever: nothing stored, nothing said). Each ends in ``OperationalError``: the
writer says "database unavailable" and tries again on a new connection; the server ends the old
connection's transaction once it has been idle as long as a write may take
(``idle_in_transaction_session_timeout``), or its rows would block the retry. A URL's own settings
(``?connect_timeout=3``) win over these. An idle connection is looked at only when used: the
collector's writer asks for an answer after ``database_check_s`` of idleness, and before its first
write after an idle spell (:meth:`collector.store.ReadingStore.check`), so a link that died meanwhile
is said and replaced before a message has to wait on it for a write's deadline; a busy writer's
write that has waited ``database_check_s`` has its session looked at from a second connection, and
is cut at once where the database waits on it (:mod:`collector.dead_link_look`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
#: Far above a legitimate statement's time: COPY of a 50,000-reading batch takes under a second.
STATEMENT_TIMEOUT_S = 30.0
#: The same for the periodic jobs (detection, VEE rounds), whose statements are larger (the
#: detection fetch of 100,000 meters' 28 days takes some 22 s), and whose wait for another
#: collector's run (an advisory lock) ends there too: a run hung behind a hung run gives up and says
#: so, and the next one tries again.
JOB_STATEMENT_TIMEOUT_S = 600.0
CONNECTION_DEFAULTS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}


def connect(database_url: str, statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> psycopg.Connection:
    """A connection with bounded waits and the session's ``statement_timeout`` set (committed).

    The ``SET`` is under :func:`deadline` too (:func:`setup_bound`): a peer that accepted the
    connection and went silent held the caller there for ever, as nothing else bounds that wait."""
    conn = psycopg.connect(**{**CONNECTION_DEFAULTS, **conninfo_to_dict(database_url)})
    try:
        with deadline(conn, setup_bound(statement_timeout_s)):
            conn.execute(f"SET statement_timeout = {round(statement_timeout_s * 1000)}")
            # A transaction whose client is gone (its COMMIT lost on a dead link, its connection cut
            # by deadline) is ended by the server after as long as a whole write may take: before, it
            # held the rows it had inserted, and every retry of the same messages waited on them.
            conn.execute(f"SET idle_in_transaction_session_timeout = {round(2 * statement_timeout_s * 1000)}")
            conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def setup_bound(statement_timeout_s: float) -> float:
    """How long a new connection's setup statements may wait for answers: as long as a write
    (twice the statement timeout), or the connect timeout where statements have none (0)."""
    return 2 * statement_timeout_s if statement_timeout_s > 0 else CONNECT_TIMEOUT_S


@contextmanager
def deadline(conn: psycopg.Connection, seconds: float) -> Iterator[None]:
    """Cut ``conn``'s socket if the block has not ended after ``seconds``: what waits on it then
    fails with ``OperationalError`` instead of waiting for ever on a peer that never answers."""
    timer = threading.Timer(seconds, _cut, args=(conn, seconds))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextmanager
def job_connection(
    database_url: str, statement_timeout_s: float = JOB_STATEMENT_TIMEOUT_S
) -> Iterator[psycopg.Connection]:
    """A periodic job's connection (detection, VEE rounds), closed at the block's end and cut after
    twice its statement timeout: a statement may take the whole timeout, and the job's few round
    trips around it far less than another."""
    with connect(database_url, statement_timeout_s) as conn, deadline(conn, 2 * statement_timeout_s):
        yield conn


def _cut(conn: psycopg.Connection, seconds: float) -> None:
    cut(conn, f"the database has not answered for {seconds:.0f} s")


def cut(conn: psycopg.Connection, why: str) -> None:
    """Shut ``conn``'s socket (``why`` said at WARNING): what waits on it fails with
    ``OperationalError``."""
    log.warning("%s: closing the connection", why)
    try:
        # shutdown acts on the socket, which the duplicate shares; libpq's own descriptor stays open
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed meanwhile
