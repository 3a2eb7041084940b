"""A warning when the open-transactions floor lags the database's clock, naming what holds it.

Detection's arrivals (``detection_runs.arrivals_from``) and billing's ``next_changed_since`` start
at ``open_transactions_floor()`` (collector migration 0072): the start of the oldest transaction
open in the database by a session that can write aquami's rows (a client's, or a logical
replication worker's; collector migration 0074, not an autovacuum or TimescaleDB worker). A session
left idle in a transaction (a psql left open, a client that crashed mid-transaction) holds it back
for as long as it lasts. That is right (what it may still commit is dated by its start), but each
detection run then reads ever more readings as arrived, and each billing pull sends ever more
again, and nothing said why. :class:`FloorLagWatch` logs one warning
line when the floor is more than a setting behind the clock, naming the session that holds it
(``open_transactions_floor_holder()``, collector migration 0073), and says it again for the same
session only once a day of its transaction has passed, not at every run or pull.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

#: The lag past which the floor is worth a warning: VEE's rounds and ingest's transactions last
#: seconds to minutes, so an hour-old transaction is one nobody is finishing.
DEFAULT_LAG = timedelta(hours=1)
#: The same holder is named again after this much more of its transaction, as a reminder.
REPEAT_EVERY = timedelta(days=1)

_HOLDER = (
    "SELECT pid, role, application_name, backend_type, state, xact_start, age FROM open_transactions_floor_holder()"
)


@dataclass(frozen=True)
class FloorHolder:
    """The session whose open transaction is the floor, as ``open_transactions_floor_holder()`` sees it."""

    pid: int
    role: str | None
    application_name: str | None
    backend_type: str | None
    state: str | None
    xact_start: datetime
    age: timedelta

    def describe(self) -> str:
        return (
            f"pid {self.pid} (role {self.role or '?'}, application_name {self.application_name or ''!r}, "
            f"{self.backend_type or 'backend'}, state {self.state or '?'}, its transaction open "
            f"{_span(self.age)} since {self.xact_start.isoformat(timespec='seconds')})"
        )

    def advice(self) -> str:
        """What to do about it. Ending the session is right for a client's (a psql left open, a client
        that crashed mid-transaction); for any other backend the floor still counts (a logical
        replication worker applying a subscription) it is not: it would only be restarted to do the
        same work again."""
        if self.backend_type in (None, "client backend"):
            return f"end it (SELECT pg_terminate_backend({self.pid})) or set idle_in_transaction_session_timeout"
        return (
            "it is not a client's session: find out why its transaction lasts "
            "(pg_stat_subscription for a subscription's worker) rather than end it"
        )


def floor_holder(conn: psycopg.Connection[Any]) -> FloorHolder | None:
    """The session holding the floor, or None if no other session has a transaction open."""
    with conn.cursor(row_factory=tuple_row) as cur:  # whatever rows the connection makes
        row = cur.execute(_HOLDER).fetchone()
    return None if row is None else FloorHolder(*row)


class FloorLagWatch:
    """Warns, on ``log``, when a floor asked by ``who`` ("detection", "billing") lags its clock by
    more than ``lag``; safe to share between threads (the server's requests)."""

    def __init__(self, log: logging.Logger, who: str, repeat_every: timedelta = REPEAT_EVERY) -> None:
        self._log, self.who, self.repeat_every = log, who, repeat_every
        self._lock = threading.Lock()
        self._warned: tuple[tuple[int, datetime], timedelta] | None = None  # (holder, its age when said)

    def check(
        self, conn: psycopg.Connection[Any], floor: datetime, clock: datetime, lag: timedelta = DEFAULT_LAG
    ) -> FloorHolder | None:
        """The holder said in a warning, if one was logged now: when ``floor`` is more than ``lag``
        before ``clock`` (the database's), and its holder was not said in the last ``repeat_every``
        of its transaction. A holder gone by the time it is asked is not said."""
        if clock - floor <= lag:
            return None
        holder = floor_holder(conn)
        if holder is None or holder.age <= lag:
            return None
        key = (holder.pid, holder.xact_start)
        with self._lock:
            if self._warned is not None and self._warned[0] == key and holder.age < self._warned[1] + self.repeat_every:
                return None
            self._warned = (key, holder.age)
        self._log.warning(
            "%s: the open-transactions floor is %s behind the database's clock (warned over %s), held by "
            "%s; until it ends each run or pull reads more again: %s",
            self.who,
            _span(clock - floor),
            _span(lag),
            holder.describe(),
            holder.advice(),
        )
        return holder


def _span(span: timedelta) -> str:
    """``span`` to the second, as "2 d 03:04:05" or "03:04:05"."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} d {clock}" if days else clock
