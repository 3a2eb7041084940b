"""Whether the server's database is away, as its connection pool last found it.

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
"""

from __future__ import annotations

import time
from typing import Any, Self

import psycopg
from psycopg.rows import DictRow


class DatabaseAway:
    """Since when (``time.monotonic()``) the pool's attempts to connect have failed; None: reached."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def reached(self) -> None:
        self.since = None


def watched_connection_class(away: DatabaseAway) -> type[psycopg.Connection[DictRow]]:
    """The pool's connection class, noting in ``away`` whether each of its attempts to connect
    failed (the database refusing, not answering within its timeout, or not letting in) or not."""

    class WatchedConnection(psycopg.Connection[DictRow]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = super().connect(conninfo, **kwargs)
            except psycopg.OperationalError:
                away.failed()
                raise
            away.reached()
            return conn

    return WatchedConnection
