"""VEE kept current: a round validates and estimates the newest days and refreshes consumption.

``aquami collector run`` runs a round every ``--vee-every`` seconds (hourly by default), so the reads
billing pulls are validated and their gaps estimated, and the consumption tables (NEM12, a meter's
daily use) stay current without anyone running ``aquami collector vee``. Several collectors may share
a database (``--shared-group``): a round runs in one of them at a time, and a collector that finds
another's round under way skips its own (a session advisory lock, tried, not waited for).

Reads stored later than a round's window reaches (a gateway's spool after a long outage) are noted
by the collector in ``late_readings``: a round starts at the oldest note it finds, and deletes the
notes it covered once its consumption is refreshed. A round that leaves a batch undone (rolled back
for conflicts) keeps them, and notes its own start there too (:func:`left_start`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from collector import db
from collector.schedule import PeriodicJob
from collector.store import LATE_AFTER
from collector.vee.config import VeeConfig
from collector.vee.runner import LEFT_FOR_THE_NEXT_ROUND, VeeReport, run_vee

log = logging.getLogger(__name__)

#: How far back each round looks: reads arrive late (a gateway's spool after an outage), and a gap
#: is estimated only once the read that closes it is in.
ROUND_DAYS = 2
#: How far back a round reaches for reads noted late (``late_readings``): a gateway back after a
#: few weeks away is covered by its next round, at a few times a round's usual cost. Reads older
#: than this (a gateway whose clock fell back to 1970 after a power cut, or one away for months)
#: would make every round that finds them redo years of the whole fleet's consumption: they are
#: logged, and ``aquami collector vee --from … --to …`` covers them when a person decides to.
LATE_REACH_DAYS = 35
#: The session advisory lock a round holds (another collector, or a person, may hold it to keep rounds off).
ROUND_LOCK_KEY = 0x76656521  # "vee!"


@contextmanager
def round_lock(conn: psycopg.Connection, wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """The rounds' lock held on ``conn`` for the block: whether it was taken. Tried, not waited for
    (another collector's round under way: this one is skipped), unless ``wait`` is given: then it
    is called and the lock waited for. Released at the block's end, the work not committed in it
    rolled back."""
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (ROUND_LOCK_KEY,)).fetchone()
    taken = bool(got and got[0])
    if not taken and wait is not None:
        wait()
        conn.execute("SELECT pg_advisory_lock(%s)", (ROUND_LOCK_KEY,))
        taken = True
    conn.commit()  # (nothing to commit in autocommit)
    if not taken:
        yield False
        return
    try:
        yield True
    finally:
        if not conn.closed:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (ROUND_LOCK_KEY,))
            conn.commit()


def round_window(every: timedelta | None) -> timedelta:
    """How far back a round run every ``every`` looks: :data:`ROUND_DAYS`, or longer for rounds more
    than about a day apart, to reach back to the rounds before's and a day (a read stored less than
    :data:`collector.store.LATE_AFTER` after its time is noted nowhere: the next round must reach it
    by its own window).

    Before, every round looked back two days whatever ``--vee-every``: with rounds more than 23 h
    apart, a read stored a little under a day late could fall between two rounds' windows, and with
    rounds more than 47 h apart reads on time did, never validated (a gap they closed never flagged
    nor estimated)."""
    usual = timedelta(days=ROUND_DAYS)
    if every is None:
        return usual
    return max(usual, every + LATE_AFTER + timedelta(hours=1))


def vee_round(
    database_url: str, now: datetime, config: VeeConfig | None = None, every: timedelta | None = None
) -> dict[str, Any] | None:
    """VEE over the last :data:`ROUND_DAYS` (:func:`round_window` for rounds run every ``every``) up
    to ``now`` (and the hour after it, for clocks a little ahead), then the consumption over the same
    period; what it did, or None if another collector's round was under way."""
    end = now + timedelta(hours=1)
    start = end - round_window(every)
    with db.job_connection(database_url) as conn, round_lock(conn) as taken:
        if not taken:
            return None
        late = conn.execute("SELECT id, since FROM late_readings").fetchall()
        # 1 µs before: the read at ``since`` closes the interval of the hour (and day) before it.
        start = min([start, *(since - timedelta(microseconds=1) for _, since in late)])
        reach = end - timedelta(days=LATE_REACH_DAYS)
        if start < reach:
            log.warning(
                "reads from as early as %s arrived late; this round covers them from %s only "
                "(run `aquami collector vee --from %s --to %s` for the rest)",
                start.isoformat(),
                reach.isoformat(),
                start.isoformat(),
                reach.isoformat(),
            )
            start = reach
        done = vee_and_consumption(conn, start, end, config or VeeConfig(), now=now)
        # the notes covered, unless a batch was left undone (rolled back for conflicts): the next
        # round reaches back to them again, the left batch's meters' late reads with it, and to
        # this round's start (left_start)
        if done["batches_left"]:
            left_start(conn, start, [since for _, since in late])
        else:
            conn.execute("DELETE FROM late_readings WHERE id = ANY (%s)", ([note_id for note_id, _ in late],))
        conn.commit()
    return done


def left_start(conn: psycopg.Connection, start: datetime, noted: list[datetime]) -> None:
    """A round that left a batch undone notes its ``start`` in ``late_readings`` (unless a note it
    found, in ``noted``, already reaches back as far), kept with the others until a round leaves
    none: the rounds after it begin no later than it did, and the left meters' reads of its first
    hours are validated by the first round that does not leave them.

    Before, the next round began an hour (``--vee-every``) later. A read stored less than a day
    after its time is noted nowhere (``collector.store.LATE_AFTER``): the rounds of the next day
    take it as their two days slide past it. Left by each of them (hourly rounds, a conflict
    lasting a day; rounds every 12 h, one left batch), it fell out of their window unvalidated: the
    gap it closed never flagged nor estimated (tests/collector/test_vee_left_hours.py)."""
    if any(since - timedelta(microseconds=1) <= start for since in noted):
        return
    conn.execute("INSERT INTO late_readings (since) VALUES (%s)", (start,))


def vee_and_consumption(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    config: VeeConfig,
    now: datetime | None = None,
    *,
    left_for: str = LEFT_FOR_THE_NEXT_ROUND,
) -> dict[str, Any]:
    """VEE over [start, end) (:func:`collector.vee.runner.run_vee`, ``left_for`` its wording of a
    batch left undone), then consumption over the same period and each meter's from the earliest
    read the run changed before it; not committed. What it did: the run's counts and
    ``consumption_hourly_rows``."""
    report = run_vee(conn, start, end, config, now=now, left_for=left_for)
    refreshed = conn.execute("SELECT refresh_consumption(%s, %s)", (start, end)).fetchone()
    earlier = refresh_changed_before(conn, report, start)
    return {**report.counts(), "consumption_hourly_rows": (refreshed[0] if refreshed else 0) + earlier}


def refresh_changed_before(conn: psycopg.Connection, report: VeeReport, start: datetime) -> int:
    """Consumption of each meter whose reads the run changed before ``start`` (a gap's estimates,
    written or deleted, reach back to where the gap opened), from there up to ``start``: the
    round's own refresh covers [start, end) for every meter. The hourly rows written."""
    earlier = {m: since for m, since in report.changed_from.items() if since < start.timestamp()}
    if not earlier:
        return 0
    row = conn.execute(
        "SELECT refresh_meter_consumption(%s::text[], %s::timestamptz[], %s)",
        (list(earlier), [datetime.fromtimestamp(t, UTC) for t in earlier.values()], start),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class VeeScheduler(PeriodicJob):
    """Runs :func:`vee_round` every ``every`` in a thread (the first an ``every`` after start: the
    collector's first minutes bring the reads a round would estimate, and a restart loop must not
    become a loop of rounds), beside ingest and detection, which it does not hold up."""

    name = "vee"

    def __init__(self, database_url: str, every: timedelta, config: VeeConfig | None = None):
        super().__init__(every, first_after=every)
        self.database_url = database_url
        self.config = config
        self.last_report: dict[str, Any] | None = None

    def work(self) -> None:
        self.last_report = vee_round(self.database_url, datetime.now(UTC), self.config, every=self.every)
        if self.last_report is None:
            log.info("vee skipped: another collector's round is under way")
        else:
            log.info("vee %s", self.last_report)
