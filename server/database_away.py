"""Whether the server's database is away, as its connection pool last found it, and the outage said
once in the log.

A request waits up to server.db.CONNECTION_WAIT_S (5 s) for a pooled connection, which is right
when every connection is busy: one comes back within milliseconds. With the database away, nothing
comes: every API request held one of the server's 40 worker threads for the whole 5 s before its 503,
so a care desk or a billing pull retrying piled requests up behind one another (100 at once: the last
answered after 15 s), and ``GET /health`` waited behind them (9.5 s: a liveness probe's 1 s timeout
reads that as a hung server, and restarting it would not bring the database back).

The pool's own attempts to connect say which case it is: the last one failed, and none has succeeded
since, is "away"; any connection made, or lent by the pool after its check, is "reached" (an attempt
refused for too many clients while the pool's own connections serve is no outage). While away, a request waits a short
server.db.AWAY_WAIT_S instead: still long enough for a connection the pool makes as the request
comes (it tries once at once when a request finds it empty) to be lent, so a database that is back
is served, not answered 503.

The log tells the outage as the collector's writer does (aquami.outage): ``database unavailable
(reason)`` at the first failed attempt, a reminder every 5 minutes while it lasts, and ``database
available again after 62 s, 95 failures`` (INFO) once reached. psycopg_pool's own line for each
failed attempt and each abandoned round of attempts (:data:`SAID_BY_THE_OUTAGE`) is left out: a
minute's outage, a request a second, was 45 two-line warnings.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Self

import psycopg
from psycopg.rows import DictRow

from aquami.outage import Outage

log = logging.getLogger("server.db")

#: psycopg_pool's messages (the format strings of its logger, ``psycopg.pool``) left out: a failed
#: attempt to connect and a round of attempts given up, which the outage says; and a connection given
#: back closed, one a line: one that failed its check before it was lent (server.db.lend, which has
#: the pool replace it, as psycopg_pool's own check did with a line at INFO), or a request's, cut with
#: the database (its request says so: "database error on /meters: …").
SAID_BY_THE_OUTAGE = frozenset(
    {
        "error connecting in %r: %s",
        "reconnection attempt in pool %r failed after %s sec",
        "discarding closed connection: %s",
    }
)


class DatabaseAway:
    """Since when (``time.monotonic()``) the pool's attempts to connect have failed; None: reached."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.since: float | None = None
        self.outage = outage if outage is not None else Outage(log, "database")

    def failed(self, reason: object = "") -> None:
        if self.since is None:
            self.since = time.monotonic()
        self.outage.failed(reason)

    def reached(self) -> None:
        self.since = None
        if self.outage.ongoing:  # a lock taken only while an outage is to be said over, not per request
            self.outage.recovered()


class _SaidByTheOutage(logging.Filter):
    """Leaves out psycopg_pool's lines the outage says instead (:data:`SAID_BY_THE_OUTAGE`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in SAID_BY_THE_OUTAGE


def leave_out_the_pools_outage_lines() -> None:
    """Filter ``psycopg.pool``'s logger (once per process; only the server uses psycopg_pool)."""
    pool_log = logging.getLogger("psycopg.pool")
    if not any(isinstance(f, _SaidByTheOutage) for f in pool_log.filters):
        pool_log.addFilter(_SaidByTheOutage())


def watched_connection_class(away: DatabaseAway) -> type[psycopg.Connection[DictRow]]:
    """The pool's connection class, noting in ``away`` whether each of its attempts to connect
    failed (the database refusing, not answering within its timeout, or not letting in) or not."""

    class WatchedConnection(psycopg.Connection[DictRow]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = super().connect(conninfo, **kwargs)
            except psycopg.OperationalError as error:
                away.failed(error)
                raise
            away.reached()
            return conn

    return WatchedConnection
