"""The database connection pool and the request dependency that lends a connection."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import Depends, Request
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from collector.db import CONNECTION_DEFAULTS, deadline
from server.database_away import DatabaseAway, leave_out_the_pools_outage_lines, watched_connection_class
from server.problems import database_unavailable
from server.schema_check import SchemaCheck

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a request waits for a connection before it is answered 503 (every connection busy, or
#: the database gone and the pool not knowing it yet): long enough for a pool to reconnect, short of
#: a client's own timeout.
CONNECTION_WAIT_S = 5.0
#: How long a request waits instead while the pool's last attempt to connect failed (server.database_away):
#: enough for the connection the pool tries at once as the request finds it empty, should the database
#: be back, to be made and lent (a few milliseconds on a LAN; a TLS handshake to another site, tens).
AWAY_WAIT_S = 0.5
#: How long the pool goes on trying to make a connection it failed to make: one attempt more, this
#: long after (psycopg_pool's back-off, cut short), then it gives up, and the next request that finds
#: the pool empty tries at once. So the pool tries while requests come, at most twice each this long
#: (a refused attempt takes a millisecond), and a request that comes once the database is back finds
#: an attempt within this, inside its AWAY_WAIT_S: served, not 503. psycopg_pool's own, 300 s, doubled
#: its delay up to 128 s (after a 70 s outage, the first 200 came 50 s after the database was back);
#: 10 s kept its delays of 1, 2 and 4 s, and requests that came in those gaps after the database was
#: back were 503 (the first 200 up to 1.5 s after it, 2.3 s after a 5 s outage).
RECONNECT_WINDOW_S = 0.25
#: How long one of the pool's attempts to connect may take (libpq's connect_timeout, whole seconds)
#: before it counts as failed: no longer than a request waits for a connection. With psycopg's own
#: (130 s), a database host that took connections and never answered was not known away for 130 s.
CONNECT_TIMEOUT_S = 5
#: How long the check of a connection before lending it (an empty query: :func:`lend`) waits for its answer.
#: On a link gone dead (the database host frozen, a firewall dropping its packets) a request waited on
#: it for ever (still waiting after 40 s in the test), holding a worker and the pool's connection.
CHECK_WAIT_S = 3.0
#: How long /health waits for a connection to ask whether the database is migrated, while no one has
#: found it so yet: a liveness probe's own timeout is short (Kubernetes: 1 s).
HEALTH_WAIT_S = 0.5
#: How long start-up waits to reach the database, to ask whether it is migrated, before it serves
#: anyway (requests answered 503 until the pool reaches it: a server started before its database, a
#: host's boot order, is not fatal). A database that is down refuses at once, so this bounds only one
#: that does not answer at all (a host gone); libpq's least connect_timeout is 2 s.
STARTUP_WAIT_S = 2.0


def open_pool(database_url: str, away: DatabaseAway, max_size: int = 10) -> ConnectionPool[Any]:
    """The server's pool, whose connections are lent by :func:`lend` (checked first). Each of its
    attempts to connect is noted in ``away``, which says the outage in the log (psycopg_pool's own
    line for each failed attempt left out)."""
    leave_out_the_pools_outage_lines()
    pool = ConnectionPool(
        database_url,
        connection_class=watched_connection_class(away),
        min_size=1,
        max_size=max_size,
        kwargs={**_bounded_waits(database_url), "row_factory": dict_row, "autocommit": True},
        configure=_set_for_requests,
        reconnect_timeout=RECONNECT_WINDOW_S,
        open=False,
    )
    pool.open(wait=False)  # not waited for: the server listens at once, its database there or not
    return pool


def lend(pool: ConnectionPool[Any], wait: float, away: DatabaseAway | None = None) -> psycopg.Connection[Any]:
    """A connection of ``pool`` that answered its check (an empty query, one round trip, at most
    CHECK_WAIT_S), within ``wait`` seconds; PoolTimeout when none did. After the database restarted,
    a request would otherwise fail on a connection it had already cut. One that fails its check is
    closed and given back, the pool making another, and the next is tried at once: psycopg_pool's own
    check (its ``check=``) slept 1, 2, then 4 s after each connection it found dead, so after a restart
    cut six idle connections the first request was answered 503 after 5 s, the database back all along
    (with three, 200 after 2.8 s).

    With ``away`` (the pool's: server.database_away), the wait after a connection failed its check is
    AWAY_WAIT_S while the pool's attempt to replace it fails: PoolTimeout then, the database away. The
    first request after the database went away, its connection cut, waited the whole ``wait`` (5 s)
    though the pool knew within milliseconds, the later ones AWAY_WAIT_S. A pool merely busy (its
    attempt not failed) leaves the request the rest of ``wait``; requests that meet no cut connection
    wait as before, in the pool's order."""
    deadline = time.monotonic() + wait
    cut = False
    while True:
        remaining = deadline - time.monotonic()
        try:  # PoolTimeout once the time is up
            conn = pool.getconn(timeout=min(remaining, AWAY_WAIT_S) if cut and away is not None else remaining)
        except PoolTimeout:
            if not cut or away is None or away.since is not None or time.monotonic() >= deadline:
                raise
            cut = False  # the pool's attempt did not fail: busy, not away; the rest of the wait
            continue
        try:
            _check_within_its_wait(conn)
        except psycopg.Error:
            conn.close()  # given back closed: the pool discards it and makes another
            pool.putconn(conn)
            cut = True
            continue
        except BaseException:
            pool.putconn(conn)
            raise
        return conn


@contextmanager
def lent(pool: ConnectionPool[Any], wait: float) -> Iterator[psycopg.Connection[Any]]:
    """:func:`lend`'s connection for the block, given back after it."""
    conn = lend(pool, wait)
    try:
        yield conn
    finally:
        pool.putconn(conn)


def _bounded_waits(database_url: str) -> dict[str, Any]:
    """The pool's connection settings: the collector's bounds on a dead link (TCP keepalives, 30 s
    for sent data to be acknowledged: collector.db.CONNECTION_DEFAULTS) and CONNECT_TIMEOUT_S, less
    those the URL sets itself (``?connect_timeout=10`` wins)."""
    own = conninfo_to_dict(database_url)
    bounds = {**CONNECTION_DEFAULTS, "connect_timeout": CONNECT_TIMEOUT_S}
    return {name: value for name, value in bounds.items() if name not in own}


def _check_within_its_wait(conn: psycopg.Connection[Any]) -> None:
    """psycopg_pool's check (an empty query), its connection cut after CHECK_WAIT_S without an answer:
    the check fails (OperationalError) and :func:`lend` gives the connection up for another."""
    with deadline(conn, CHECK_WAIT_S):
        ConnectionPool.check_connection(conn)


def connect_at_start(database_url: str) -> psycopg.Connection[Any]:
    """One connection for start-up's question (is the database migrated?), not the pool's: the pool
    retries a refused connection until its timeout, so waiting on it held the server's listening
    back by that timeout (twice 10 s, connections refused meanwhile) with the database away. This
    says at once, OperationalError, when the database refuses; within STARTUP_WAIT_S when it is mute."""
    wait = max(2, math.ceil(STARTUP_WAIT_S))  # libpq's connect_timeout: whole seconds; 0 is for ever
    return psycopg.connect(database_url, autocommit=True, connect_timeout=wait)


def ask_at_start(database_url: str, schema: SchemaCheck) -> str | None:
    """What start-up finds between this code and the database (SchemaCheck.ask); None too when the
    database is not reachable, which is said: requests then ask once it is."""
    try:
        with connect_at_start(database_url) as conn:
            return schema.ask(conn)
    except psycopg.OperationalError:
        log.warning("database not reachable yet; requests are answered 503 until it is")
        return None


#: Each pooled connection's session settings (:func:`_set_for_requests`), sent in one round trip.
#: - TimeZone UTC: psycopg gives timestamps in the session's TimeZone, which is the database's or the
#:   host's (initdb copies the host's zone), and the pages and the API show UTC.
#: - jit off: PostgreSQL compiles a query with LLVM when its plan's estimated cost passes
#:   jit_above_cost (100,000 by default), again at every execution. A request reads one meter, one
#:   account or one page, but its plan is estimated over the fleet and its history: the meter page's
#:   daily query, estimated at 117,599 before its rewrite, compiled 462 functions at every view (83 ms
#:   of a page the query answered in 2 ms). benchmarks/server_queries_jit.py runs every request's
#:   queries with JIT as configured and off: at 300 meters read hourly for 3 years the whole fleet's
#:   NEM12 download compiled 5,138 functions, 3.4 s against 1.2 s off, and the determinants page
#:   was estimated at 88,952; at 3,000 meters and a month, that download 12.1 s against 11.3 s, and
#:   no other request was compiled. With jit_above_cost 500 there, standing for a fleet whose
#:   estimates pass it, the meter page's daily query took 47.6 ms against 4.4 ms off, and the
#:   determinants page of 500 accounts, the bulkiest, 610 ms against 613: no request gained from JIT.
#:   The database's own setting is left for the collector and the detection job, whose bulk queries
#:   are their own connections.
SESSION_SETTINGS = "SET TIME ZONE 'UTC'; SET jit = off"


def _set_for_requests(conn: psycopg.Connection[Any]) -> None:
    """Each new pooled connection's session as the requests need it (:data:`SESSION_SETTINGS`)."""
    conn.execute(SESSION_SETTINGS)


def lend_to_request(request: Request) -> psycopg.Connection[Any]:
    """A checked pooled connection (:func:`lend`) for the request, to give back to the app's pool;
    503 (with Retry-After) when none comes in time, which is short while the pool finds the database
    away (server.database_away)."""
    pool: ConnectionPool = request.app.state.pool
    away: DatabaseAway = request.app.state.database_away
    wait = CONNECTION_WAIT_S if away.since is None else AWAY_WAIT_S
    started = time.monotonic()
    try:
        conn = lend(pool, wait, away)
    except PoolTimeout:
        said = "no database connection within" if away.since is None else "the database is not reachable: none within"
        waited = round(time.monotonic() - started, 1)  # ``wait``, or less: lend learned the database away
        raise database_unavailable(f"{said} {waited:g} s; try again shortly") from None
    away.reached()  # lent, its check passed: the database answers (a failed attempt was one too many clients)
    return conn


def get_connection(request: Request) -> Iterator[psycopg.Connection]:
    """A pooled connection for the request (:func:`lend_to_request`: 503 when none comes in time),
    and 503 while the database is not migrated (asked here until it is: see server.schema_check)."""
    pool: ConnectionPool = request.app.state.pool
    schema: SchemaCheck = request.app.state.schema_check
    conn = lend_to_request(request)
    try:
        schema.require(conn)
        yield conn
    finally:
        pool.putconn(conn)


class StreamingConnection:
    """The request's connection (:func:`get_connection`'s) for a response streamed as it is read.

    FastAPI (0.118 on: pyproject's floor) ends a dependency after the response is sent, so a
    ``StreamingResponse`` can read on the request's own connection: one pooled connection a
    download, where taking a second one for the body held two (a pool of 10: five downloads at once
    took every connection; a pool of one answered every download 503). A response cut short (the
    client gone) leaves its body suspended, in its transaction and server-side cursor, to be closed
    whenever it is garbage collected, by then on a connection the pool may have lent to another
    request: each body taken through :meth:`stream` is closed before the connection goes back."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._bodies: list[Iterator[Any]] = []

    def stream(self, body: Iterator[T]) -> Iterator[T]:
        """``body`` (a generator reading on :attr:`conn`), closed with the request."""
        self._bodies.append(body)
        return body

    def close(self) -> None:
        for body in self._bodies:
            close = getattr(body, "close", None)
            if close is not None:
                with suppress(psycopg.Error):  # the connection cut: given back, the pool discards it
                    close()


def get_streaming_connection(
    conn: Annotated[psycopg.Connection[Any], Depends(get_connection)],
) -> Generator[StreamingConnection, None, None]:
    """:class:`StreamingConnection` on the request's connection; its bodies closed as the request
    ends, before :func:`get_connection` (which this depends on, so ends after it) gives it back."""
    streaming = StreamingConnection(conn)
    try:
        yield streaming
    finally:
        streaming.close()
