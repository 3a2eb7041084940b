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

The lock is a meter's bucket of :data:`BUCKETS` (by ``hashtext``), not the meter itself: a batch of
thousands of meters would take thousands of locks, each an entry of the server's shared lock table
(``max_locks_per_transaction`` x connections, 6,400 by default), which a few such batches at once
would fill. Corrections of two meters in one bucket take turns too; they are a person's, and short.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

#: pg_advisory_xact_lock's first key ("aqed"; the key a meter's corrections took turns by before).
KEY = 0x61716564
#: How many buckets the meters fall into: a batch takes at most this many locks.
BUCKETS = 64


def person_takes_turn(conn: psycopg.Connection[Any], meter_id: str) -> None:
    """Hold ``meter_id``'s bucket exclusively until the transaction ends: the collector's batches
    with reads of its meters in it finish first, and the next wait."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s) & %s)", (KEY, meter_id, BUCKETS - 1))


def ingest_takes_turns(cur: psycopg.Cursor[Any], meter_ids: Iterable[str]) -> None:
    """Hold the buckets of ``meter_ids`` shared until the transaction ends, in bucket order; taken
    before the batch writes anything (a row a correction waits for must not be held by a batch
    waiting for the correction)."""
    cur.execute(
        "SELECT count(pg_advisory_xact_lock_shared(%s, bucket)) FROM "
        "(SELECT DISTINCT hashtext(m) & %s AS bucket FROM unnest(%s::text[]) m ORDER BY bucket) b",
        (KEY, BUCKETS - 1, list(meter_ids)),
    )


def vee_takes_turns(conn: psycopg.Connection[Any], meter_ids: Iterable[str]) -> None:
    """A VEE batch's turn: the buckets of ``meter_ids`` held as arriving reads hold them (shared, in
    bucket order, until the transaction ends), taken before the batch loads its meters' reads, so
    what it writes is judged from reads no correction changes meanwhile. Never waits for arriving
    reads, nor they for it; a correction waits for it, and it for a correction."""
    with conn.cursor() as cur:
        ingest_takes_turns(cur, meter_ids)
