"""A person's correction and the collector's storing of new reads for the same meter take turns.

A correction is judged against the meter's stored measured reads either side of it
(collector.vee.register_order): out of sequence with them, or, as the meter's newest, faster than
the meter, it is refused unless confirmed. The check read the neighbours, then wrote, and in between
a batch of arriving reads could commit one the check had not seen (it was not committed when the
check looked): 1.000 judged as the meter's newest and taken, with the meter's 481.0 stored after it
in the same instant, an unconfirmed step back no one was asked about. So the two hold the same
transaction-level advisory lock: a correction holds its meter's exclusively from before its check
until it commits, and a batch of arriving reads holds its meters' shared from before it writes
until it commits (batches do not wait for each other). A correction waits for the batches under
way, and sees their reads; a batch waits for a correction under way, and its reads arrive after it.

VEE's batches take the same turns, shared like arriving reads', from before a batch loads its
meters' reads until it commits its flags, estimates and deletions: a VEE batch and a correction of
one of its meters took no turns, so VEE estimated a gap from reads loaded before a person's value
in it committed, and wrote estimates around that value that it had never seen (an estimate above
the value after it: the register stepping back). Now a correction under way holds VEE's batch off
until it commits, and the batch sees its value; a correction arriving while a batch is under way
waits for the batch to commit, and is judged against its estimates.

A correction waited for a VEE batch by asking for its meter's turn, exclusively, while the batch held
it shared, and PostgreSQL grants no shared lock while an exclusive request waits before it: every
batch of arriving reads with a meter of its bucket (a message of 1,000 meters has one of every
bucket) queued behind the correction, and the collector's writer stalled for the rest of the VEE
batch (a message stored 10.9 s after it arrived, 35 ms now: benchmarks/vee_correction_wait.py). So
VEE's batches hold a second turn of each of their buckets, :data:`VEE_KEY`, shared, taken before
their meters' (:func:`vee_takes_turns`), and a correction waits for VEE there first, exclusively,
then takes its meter's turn (:func:`person_takes_turn`), where it waits only for the batches of
arriving reads under way: arriving reads never ask for VEE's turn, so a correction waiting for it
holds none of theirs back. The order opens no cycle: a VEE batch asks for its meters' turns only once it holds
VEE's turn of every bucket of them, so no correction holds one of those meters' turns then (it would
hold VEE's turn first), and the batch never waits for a correction there (the other way round, a
batch holding a meter's turn shared, waiting for VEE's behind a correction, and the correction
waiting for the meter's turn behind the batch, would be a deadlock); a correction waiting for VEE's
turn holds no turn of its own; and a VEE batch waiting for a correction's VEE turn holds only VEE's
turns of buckets before it, which only corrections ask for, holding nothing then either. A VEE batch
takes 128 locks, not 64.

The lock is a meter's bucket of :data:`BUCKETS` (by ``hashtext``), not the meter itself: a batch of
thousands of meters would take thousands of locks, each an entry of the server's shared lock table
(``max_locks_per_transaction`` x connections, 6,400 by default), which a few such batches at once
would fill. Corrections of two meters in one bucket take turns too; they are a person's, and short.

A correction refreshes its meter's consumption before it commits, and a refresh takes the refreshes'
turn (collector migration 0061, 'cons'), which a VEE round's refresh of the whole fleet holds for
seconds. A correction that came to it holding its meter's turn waited there with the turn held, and
every batch of arriving reads with a meter of its bucket (a message of 1,000 meters has one of every
bucket) queued behind it: the collector's writer stalled for the rest of the round's refresh (up to
14.8 s measured, 0.47 s now: benchmarks/ingest_beside_a_refresh.py). Taking the refreshes' turn first
is no way out: a correction would hold it while waiting for its meter's turn, held by a VEE batch
that may wait for a row a job card holds while the job card waits for the refreshes' turn, a
deadlock (tests/collector/test_consumption_refreshes_take_turns.py). So a correction only tries the
refreshes' turn once its write is done (:func:`person_takes_turns`); when a refresh holds it, the
correction rolls back to before its meter's turn, waits for the refresh holding nothing, and does it
all again.

A job card (``aquami server register-meters``) wrote its meters' rows of ``meters``, then waited for
the refreshes' turn at its first installation (server migration 0083) with them held; the collector's
writer registering one of those meters (a meter fitted and heard before the clerk's file committed, or
any meter of a collector just started: ``INSERT … ON CONFLICT DO NOTHING`` waits for the row's writer)
stalled behind it for the rest of a round's refresh. It gives way the same way
(:func:`giving_way_to_a_refresh`; server.meters.meters_file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import tuple_row

#: pg_advisory_xact_lock's first key ("aqed"; the key a meter's corrections took turns by before).
KEY = 0x61716564
#: VEE's turn of a bucket: pg_advisory_xact_lock's first key ("aqvb"), held shared by VEE's batches and
#: exclusively by a correction, never taken by arriving reads.
VEE_KEY = 0x61717662
#: How many buckets the meters fall into: a batch takes at most this many locks.
BUCKETS = 64
#: The consumption refreshes' turn: pg_advisory_xact_lock's key ('cons', collector migration 0061).
REFRESHES_KEY = 1668247155
#: How many times a correction (or a job card) gives way to a refresh under way
#: (:func:`giving_way_to_a_refresh`) before it waits for the next one holding its meter's turn (its
#: rows), as all did before: it is not put off for ever by refreshes that keep coming (job cards,
#: other people's corrections).
GIVE_WAY_TIMES = 3

T = TypeVar("T")


def person_takes_turn(conn: psycopg.Connection[Any], meter_id: str) -> None:
    """Hold ``meter_id``'s bucket exclusively until the transaction ends: the VEE batches and the
    collector's batches with reads of its meters in it finish first, and the next wait. VEE's are
    waited for on VEE's turn of the bucket (:data:`VEE_KEY`), which arriving reads do not take, before
    the meter's turn is asked for: arriving reads wait for the correction, not for a VEE batch behind
    it. Once VEE's turn is held, the meter's turn waits only for batches of arriving reads under way."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s) & %s)", (VEE_KEY, meter_id, BUCKETS - 1))
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s) & %s)", (KEY, meter_id, BUCKETS - 1))


def giving_way_to_a_refresh(conn: psycopg.Connection[Any], write: Callable[[], T]) -> T:
    """``write``, then the refreshes' turn held too: what ``write`` returned. The turn is tried, not
    waited for, with what ``write`` holds: a refresh holding it has ``write`` rolled back (a savepoint:
    its rows and locks let go), waited for holding nothing, and ``write`` done again, judged against
    what was committed meanwhile. After :data:`GIVE_WAY_TIMES` ``write`` is done once more and the
    turn left to the caller, who waits for it holding what ``write`` holds, as all did before. The
    transaction must be open; ``write`` may run more than once, each time from the start, and must
    write nothing outside the transaction. An exception from ``write`` leaves the savepoint to the
    caller's rollback."""
    for _ in range(GIVE_WAY_TIMES):
        conn.execute("SAVEPOINT giving_way_to_a_refresh")
        written = write()
        with conn.cursor(row_factory=tuple_row) as cur:  # (the server's connections give dicts)
            got = cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (REFRESHES_KEY,)).fetchone()
        if got is not None and got[0]:
            conn.execute("RELEASE SAVEPOINT giving_way_to_a_refresh")
            return written
        conn.execute("ROLLBACK TO SAVEPOINT giving_way_to_a_refresh")  # what write held let go
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESHES_KEY,))  # the refresh under way waited for
        conn.execute("ROLLBACK TO SAVEPOINT giving_way_to_a_refresh")  # and its turn let go: none held
        conn.execute("RELEASE SAVEPOINT giving_way_to_a_refresh")
    return write()


def person_takes_turns(conn: psycopg.Connection[Any], meter_id: str, write: Callable[[], T]) -> T:
    """``write`` (a correction's check and write of ``meter_id``'s reads) in the meter's turn
    (:func:`person_takes_turn`), and the refreshes' turn then held too, so that the correction's
    refresh of its consumption waits for nothing: what ``write`` returned. Both held until the
    transaction ends, which must be open.

    The refreshes' turn is tried, not waited for, with the meter's held: a refresh holding it has
    the work rolled back (a savepoint: the meter's turn and the rows written let go, arriving reads
    stored meanwhile), waited for holding neither turn, and the work done again from the meter's
    turn, judged against what arrived meanwhile. After :data:`GIVE_WAY_TIMES` the refreshes' turn is
    waited for with the meter's held (by the caller's refresh). An exception from ``write`` leaves
    the savepoint to the caller's rollback."""

    def in_its_turn() -> T:
        person_takes_turn(conn, meter_id)
        return write()

    return giving_way_to_a_refresh(conn, in_its_turn)


def ingest_takes_turns(cur: psycopg.Cursor[Any], meter_ids: Iterable[str]) -> None:
    """Hold the buckets of ``meter_ids`` shared until the transaction ends, in bucket order; taken
    before the batch writes anything (a row a correction waits for must not be held by a batch
    waiting for the correction)."""
    _buckets_shared(cur, KEY, list(meter_ids))


def vee_takes_turns(conn: psycopg.Connection[Any], meter_ids: Iterable[str]) -> None:
    """A VEE batch's turn: VEE's turns of the buckets of ``meter_ids`` (:data:`VEE_KEY`), then their
    turns as arriving reads hold them, each shared, in bucket order, until the transaction ends, taken
    before the batch loads its meters' reads, so what it writes is judged from reads no correction
    changes meanwhile. Never waits for arriving reads, nor they for it; a correction waits for it (on
    VEE's turn), and it for a correction."""
    meters = list(meter_ids)
    with conn.cursor() as cur:
        _buckets_shared(cur, VEE_KEY, meters)
        _buckets_shared(cur, KEY, meters)


def _buckets_shared(cur: psycopg.Cursor[Any], key: int, meter_ids: list[str]) -> None:
    """The advisory locks (``key``, bucket) of the buckets of ``meter_ids``, shared, in bucket order."""
    cur.execute(
        "SELECT count(pg_advisory_xact_lock_shared(%s, bucket)) FROM "
        "(SELECT DISTINCT hashtext(m) & %s AS bucket FROM unnest(%s::text[]) m ORDER BY bucket) b",
        (key, BUCKETS - 1, meter_ids),
    )
