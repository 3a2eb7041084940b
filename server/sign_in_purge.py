"""Ended sign-in sessions and old sign-in links deleted on a clock, not only when someone signs in.

:func:`server.sign_in_links.purge` ran only as a link was made or opened, or the form signed someone
in: a server nobody signed in to kept every session past its end and every link past its day
(hashes only, but rows a database dump carries and no one needs). The server now purges them
:data:`FIRST_PURGE_AFTER` after it starts and every :data:`PURGE_EVERY` while it runs, in the same
two DELETEs, each over its table's ``expires_at`` index (server migration 0069), on one of the
pool's connections lent as to a request, in a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from server import db
from server.sign_in_links import purge

__all__ = ["FIRST_PURGE_AFTER", "PURGE_EVERY", "purge_now", "purging"]

log = logging.getLogger(__name__)

#: How often the server deletes ended sessions and old links: an ended session signs no one in
#: (server.auth.verify_session reads only live ones), so this bounds only how long its row lingers.
PURGE_EVERY = timedelta(hours=1)
#: How long after start the first purge waits: not at once, where it would ask the pool for a
#: connection while the pool is making its first, and the pool would open a second for it (the server
#: starts on one: tests/server/test_start_asks_once.py). A server restarted every few seconds (a crash
#: loop) purges nothing, and is purged by the first that runs a minute.
FIRST_PURGE_AFTER = timedelta(minutes=1)


def purge_now(pool: ConnectionPool[Any]) -> bool:
    """Delete ended sessions and old links on one of ``pool``'s connections: whether it did. Not when
    no connection comes within :data:`server.db.CONNECTION_WAIT_S` or the database fails the
    DELETEs (away, not migrated yet): the next round tries again, said in the log at debug level
    only, as the server's own outage lines already say the database is away."""
    try:
        with db.lent(pool, db.CONNECTION_WAIT_S) as conn, conn.transaction():
            purge(conn)
    except psycopg.Error as error:  # PoolTimeout and PoolClosed are psycopg errors too
        log.debug("ended sign-in sessions and old links not purged this round: %s", error)
        return False
    return True


async def purging(pool: ConnectionPool[Any], first_after: timedelta, every: timedelta) -> None:
    """Purge ``first_after`` from now, then every ``every``, until cancelled (the server's lifespan ends)."""
    await asyncio.sleep(first_after.total_seconds())
    while True:
        await asyncio.to_thread(purge_now, pool)
        await asyncio.sleep(every.total_seconds())
