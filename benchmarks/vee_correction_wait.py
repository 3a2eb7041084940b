"""How long a person's correction waits for a VEE round under way: measured, not timed in a test.

A VEE batch holds its meters' turns (:mod:`collector.meter_turns`) from before it loads their reads
until it commits its flags and estimates; a correction (``PUT /meters/{id}/readings/{ts}``,
:func:`collector.vee.editing.edit_reading`) takes its meter's turn exclusively, so it waits for the
batch under way (on VEE's turn of its meter's bucket, :data:`collector.meter_turns.VEE_KEY`, then its
meter's). The turns are 64 buckets of meters (by ``hashtext``): a batch of 2,000 meters
holds nearly all of them, so a correction of any meter, in the batch or not, waits for it. The
next batch asks for the turns after the correction and waits for it: a correction waits for one
batch at most, never the whole round.

Here a round runs over a labelled fleet (``simulators.fleet``, 1 % of reads missing) after the
go-live round; the correction of one meter's read (its value kept, confirmed) starts the moment the
round's first batch holds the turns, the worst case, and is timed to its commit. Beside it: the same
correction with no round under way, and the round's batches' mean time (the round's time over its
batches; its consumption refresh after them included).

The correction is :func:`collector.vee.editing.edit_reading` as it is, in its own transaction; a
sampler notes how long its session waits for its meter's turn (a bucket's advisory lock of
:data:`collector.meter_turns.KEY`, or VEE's turn of it, :data:`collector.meter_turns.VEE_KEY`) and how
long for the refreshes' turn ('cons'). Since it gives way to
a refresh under way (:func:`collector.meter_turns.person_takes_turns`), a correction starting during
the round's consumption refresh waits for that refresh holding no turn, and is done once it commits.
(Before, this benchmark took the meter's turn itself before ``edit_reading``, so the turn stayed held
through that give-way: it measured the correction as it was before, waiting for the refresh holding
its meter's turn, 1.9 s, and the message behind it as long.)

And the collector's ingest beside the correction: once the correction waits (for the batch, or for
the round's consumption refresh to commit, holding no turn now), one message of the next reads of
``--ingest-meters`` meters is stored through the collector's writer
(:class:`collector.store.ReadingStore`) and timed to its commit. Its meters fall in every one of the
64 buckets (:mod:`collector.meter_turns`), the corrected meter's among them. A correction waiting for
a batch on VEE's turn, or for the round's refresh, holds no turn the message asks for, and the
message is not held back. Beside it: the same message stored with no round under way, and stored
while a batch holds the turns with no correction queued (the batch's shared turns do not hold
ingest's back). A second sampler notes what the writer's session waits for, and the chain holding
it up (``pg_locks``, ``pg_blocking_pids``).

"a batch (before)": the correction starting as the round's first batch holds the turns, as it was
before it waited for VEE on VEE's turn: its meter's turn asked for alone (``person_takes_turn`` as it
was, in this process only), so it queued for it, exclusively, behind the batch's shared hold, and the
message, asking for the same bucket shared, queued behind the correction (PostgreSQL grants no
shared lock while an exclusive request waits before it): the message waited for the rest of the
batch. "a batch": as it is now. The message's seconds behind each are printed with their ratio.

Needs TimescaleDB, started as the test fixtures start it (tests/services.py;
``AQUAMI_TEST_DATABASE_URL`` points at another).

    python -m benchmarks.vee_correction_wait [--meters 2000] [--tries 3] [--ingest-meters 1000]
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from unittest import mock

import psycopg
from psycopg.conninfo import make_conninfo

from benchmarks.bench_detection_fetch import fleet_database
from collector import meter_turns
from collector.batch_parser import ReadingRow
from collector.meter_turns import BUCKETS, KEY, REFRESHES_KEY, VEE_KEY
from collector.store import ReadingStore
from collector.vee.config import VeeConfig
from collector.vee.editing import edit_reading
from collector.vee.rounds import ROUND_DAYS, vee_round
from simulators.fleet import FleetSpec, generate_fleet
from tests.lock_waits import waits_of

#: The collector's writer's session, by name, for the sampler of what it waits for.
WRITER_NAME = "aquami-bench-writer"

_TURNS_HELD = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.datname = current_database() "
    "AND l.locktype = 'advisory' AND l.classid = %s AND l.mode = 'ShareLock' AND l.granted"
)
_REFRESHING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
    "AND query LIKE 'SELECT refresh_consumption(%%'"
)
#: a session of this database waiting for an advisory lock: the correction, for its meter's turn or the
#: refreshes' turn (another database's, a test's on the same server, is not this benchmark's)
_WAITING = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
    "WHERE a.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
)
#: which turn the session ``pid`` waits for, if any: its meter's (classid KEY) or the refreshes' (0, 'cons')
_WAITS_FOR = (
    "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted"
)


class Wait(NamedTuple):
    """A correction's seconds to its commit, and of them the seconds its session was seen waiting for
    its meter's turn, and for the refreshes' turn (a round's refresh under way, waited for holding no
    turn; or, after its give-ways, its own refresh waiting with its meter's turn held)."""

    total: float
    turn: float
    refresh: float


class _Watch(threading.Thread):
    """What the session ``pid`` waits for, looked at every 5 ms: seconds seen waiting for a meter's turn
    and for the refreshes' turn."""

    def __init__(self, db: str, pid: int):
        super().__init__(daemon=True)
        self.db, self.pid = db, pid
        self.turn = self.refresh = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.db, autocommit=True) as conn:
            last = time.perf_counter()
            while not self.stop.wait(0.005):
                waits = conn.execute(_WAITS_FOR, (self.pid,)).fetchall()
                now = time.perf_counter()
                if any(classid in (KEY, VEE_KEY) for classid, _ in waits):
                    self.turn += now - last
                elif (0, REFRESHES_KEY) in waits:
                    self.refresh += now - last
                last = now


class _WriterWaits(threading.Thread):
    """What the writer's session (:data:`WRITER_NAME`) waits for, and the chain holding it up
    (:func:`tests.lock_waits.waits_of`), looked at every 10 ms: a count of each (the pids left out,
    so that the rounds' counts add up)."""

    def __init__(self, db: str):
        super().__init__(daemon=True)
        self.db = db
        self.seen: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.db, autocommit=True) as conn:
            while not self.stop.wait(0.01):
                self.seen.update(re.sub(r"pid \d+ ", "", wait) for wait in waits_of(conn, WRITER_NAME))


def _turn_as_before(conn: psycopg.Connection[Any], meter_id: str) -> None:
    """:func:`collector.meter_turns.person_takes_turn` as it was before a correction waited for VEE on
    VEE's turn: the meter's turn asked for alone, waiting for a VEE batch there."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s) & %s)", (KEY, meter_id, BUCKETS - 1))


@contextmanager
def _corrections_as(when: str) -> Iterator[None]:
    """Corrections made in the block as they were before (``when`` ends "(before)") or as they are."""
    if not when.endswith("(before)"):
        yield
        return
    with mock.patch.object(meter_turns, "person_takes_turn", _turn_as_before):
        yield


def _correct(db: str, meter_id: str, ts: datetime) -> Wait:
    """A person's correction of ``meter_id``'s read at ``ts`` (its stored value, confirmed), in its own
    transaction, as :func:`edit_reading` makes it."""
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT volume_m3 FROM readings WHERE meter_id = %s AND ts = %s", (meter_id, ts)).fetchone()
        assert row is not None, (meter_id, ts)
        volume = Decimal(row[0])
        conn.commit()
        watch = _Watch(db, conn.info.backend_pid)
        watch.start()
        started = time.perf_counter()
        try:
            with conn.transaction():
                edit_reading(
                    conn,
                    meter_id,
                    ts,
                    volume,
                    by="measurement",
                    reason="a wait measured",
                    out_of_sequence_confirmed=True,
                )
            total = time.perf_counter() - started
        finally:
            watch.stop.set()
            watch.join()
        return Wait(total, watch.turn, watch.refresh)


def _wait_until(db: str, query: str, params: tuple[object, ...], what: str, timeout_s: float = 300.0) -> None:
    """Until ``query`` counts something: a VEE batch holding meters' turns (shared advisory locks of
    :data:`KEY`), or the round refreshing consumption."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(db, autocommit=True) as conn:
        while not (row := conn.execute(query, params).fetchone()) or not row[0]:
            if time.monotonic() > deadline:
                raise SystemExit(f"no VEE round came to {what}")
            time.sleep(0.005)


def _ingest(store: ReadingStore, rows: list[ReadingRow]) -> float:
    """Seconds the collector's writer takes to store ``rows`` (one message) and commit."""
    started = time.perf_counter()
    store.write(rows)
    return time.perf_counter() - started


def _next_reads(conn: psycopg.Connection, meters: int, newest: datetime, at: datetime) -> list[ReadingRow]:
    """A message of the first ``meters`` meters' reads at ``at``, each its register at ``newest``."""
    rows = conn.execute(
        "SELECT meter_id, volume_m3::text FROM readings WHERE ts = %s ORDER BY meter_id LIMIT %s", (newest, meters)
    ).fetchall()
    return [(meter_id, at.isoformat(), volume, None, None, [], "GW-BENCH", 1) for meter_id, volume in rows]


class During(NamedTuple):
    """A correction started during a round: its wait, the round's seconds, the seconds of a
    message ingested once the correction waits (None: none stored), and what the writer waited for."""

    wait: Wait
    round_s: float
    ingest_s: float | None
    writer_waits: Counter[str]


def _during_a_round(
    db: str,
    at: datetime,
    config: VeeConfig,
    when: str,
    meter_id: str,
    ts: datetime,
    ingest: tuple[ReadingStore, list[ReadingRow]] | None = None,
) -> During:
    """A round at ``at`` in a thread, and the correction started ``when`` it comes to "a batch" (its
    first batch holds the turns; "a batch (before)": the correction as it was before) or "the refresh"
    (its consumption refresh), in another; with ``ingest``, its message stored once the correction
    waits. With ``meter_id`` empty, no correction: the message is stored as soon as the round comes
    there."""
    laps: list[float] = []
    waits: list[Wait] = []

    def run_round() -> None:
        started = time.perf_counter()
        vee_round(db, at, config)
        laps.append(time.perf_counter() - started)

    round_thread = threading.Thread(target=run_round)
    round_thread.start()
    correction = threading.Thread(target=lambda: waits.append(_correct(db, meter_id, ts))) if meter_id else None
    ingest_s = None
    writer_waits = _WriterWaits(db)
    try:
        with _corrections_as(when):
            if when.startswith("a batch"):
                _wait_until(db, _TURNS_HELD, (KEY,), "its first batch")
            else:
                _wait_until(db, _REFRESHING, (), "its consumption refresh")
            if correction is not None:
                correction.start()
                if ingest is not None:
                    _wait_until(db, _WAITING, (), "a correction waiting")
            if ingest is not None:
                writer_waits.start()
                ingest_s = _ingest(*ingest)
            if correction is not None:
                correction.join()  # (as it was, till its end)
    finally:
        if writer_waits.ident is not None:
            writer_waits.stop.set()
            writer_waits.join()
        if correction is not None and correction.ident is not None:
            correction.join()
        round_thread.join()
    return During(waits[0] if waits else Wait(0.0, 0.0, 0.0), laps[0], ingest_s, writer_waits.seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--tries", type=int, default=3, help="rounds, each with a correction; median")
    parser.add_argument("--ingest-meters", type=int, default=1_000, help="meters in the message ingested")
    args = parser.parse_args()

    config = VeeConfig()
    spec = FleetSpec(meters=args.meters, days=config.profile_lookback_days + ROUND_DAYS + 2, seed=args.seed,
                     missing_read_fraction=0.01)  # fmt: skip
    fleet = generate_fleet(spec)
    now = fleet.timestamps[-1].astype("datetime64[us]").item().replace(tzinfo=UTC)
    with fleet_database(fleet) as db:
        with psycopg.connect(db) as conn:
            meters = int(conn.execute("SELECT count(*) FROM meters").fetchone()[0])  # type: ignore[index]
            meter_id, newest = conn.execute(
                "SELECT meter_id, max(ts) FROM readings GROUP BY meter_id ORDER BY meter_id LIMIT 1"
            ).fetchone()  # type: ignore[misc]
        batches = math.ceil(meters / config.batch_meters)
        started = time.perf_counter()
        vee_round(db, now, config)  # the go-live round: every meter new
        print(f"{meters:,} meters, {batches} batches; the go-live round {time.perf_counter() - started:.1f} s")
        alone = [_correct(db, meter_id, newest - timedelta(hours=2 * k + 40)).total for k in range(args.tries)]
        store = ReadingStore(make_conninfo(db, application_name=WRITER_NAME), check_gateways=False)
        message = 0

        def next_message() -> tuple[ReadingStore, list[ReadingRow]]:
            """The writer and a message of reads at a minute of their own after the fleet's newest."""
            nonlocal message
            message += 1
            with psycopg.connect(db) as conn:
                return store, _next_reads(conn, args.ingest_meters, newest, newest + timedelta(minutes=message))

        try:
            _ingest(*next_message())  # (the writer's connection and its meters looked up: not timed)
            ingest_alone = [_ingest(*next_message()) for _ in range(args.tries)]
            cases = ("a batch (before)", "a batch", "the refresh")
            waits: dict[str, list[Wait]] = {when: [] for when in cases}
            ingested: dict[str, list[float]] = {when: [] for when in cases}
            writer_waits: dict[str, Counter[str]] = {when: Counter() for when in cases}
            ingest_beside_batch: list[float] = []
            rounds: list[float] = []
            for k in range(args.tries):
                for j, when in enumerate(cases):
                    at, ts = now + timedelta(hours=1 + 4 * k + j), newest - timedelta(hours=6 * k + 2 * j + 5)
                    during = _during_a_round(db, at, config, when, meter_id, ts, next_message())
                    waits[when].append(during.wait)
                    ingested[when].append(during.ingest_s or 0.0)
                    writer_waits[when] += during.writer_waits
                    rounds.append(during.round_s)
                    print(
                        f"[{k + 1}] a correction starting as a round comes to {when}: {during.wait.total:.2f} s (its "
                        f"turn {during.wait.turn:.2f} s, the refreshes' turn {during.wait.refresh:.2f} s); a message "
                        "ingested "
                        f"behind it {during.ingest_s or 0.0:.2f} s; the round {during.round_s:.2f} s",
                        flush=True,
                    )
                beside = _during_a_round(
                    db, now + timedelta(hours=4 + 4 * k), config, "a batch", "", ts, next_message()
                )
                ingest_beside_batch.append(beside.ingest_s or 0.0)
                rounds.append(beside.round_s)
                beside_ms = (beside.ingest_s or 0.0) * 1000
                print(f"[{k + 1}] a message ingested during a batch, no correction: {beside_ms:.0f} ms")
        finally:
            store.close()
    print(f"a correction alone: {statistics.median(alone) * 1000:.0f} ms (median of {args.tries})")
    print(f"a round: {statistics.median(rounds):.2f} s for {batches} batches of up to {config.batch_meters:,} meters")
    for when, seconds in waits.items():
        print(
            f"a correction starting as the round comes to {when}: {statistics.median(w.total for w in seconds):.2f} s, "
            f"its turn {statistics.median(w.turn for w in seconds):.2f} s, the refreshes' turn "
            f"{statistics.median(w.refresh for w in seconds):.2f} s (median of {args.tries})"
        )
    alone_ms, beside_ms = statistics.median(ingest_alone) * 1000, statistics.median(ingest_beside_batch) * 1000
    print(
        f"a message of {args.ingest_meters:,} meters' reads ingested: alone {alone_ms:.0f} ms; "
        f"during a VEE batch, no correction, {beside_ms:.0f} ms (median of {args.tries})"
    )
    for when, seconds_ in ingested.items():
        behind = "the round's refresh" if when == "the refresh" else "a VEE batch" + when.removeprefix("a batch")
        each = ", ".join(f"{s:.2f}" for s in seconds_)
        print(
            f"a message ingested behind a correction waiting for {behind}: "
            f"{statistics.median(seconds_):.2f} s (median of {args.tries}; each {each} s)"
        )
        for what, count in writer_waits[when].most_common(2):
            print(f"    the writer waited for {what} ({count} samples of 10 ms)")
    before, after = statistics.median(ingested["a batch (before)"]), statistics.median(ingested["a batch"])
    print(
        f"a message behind a correction waiting for a VEE batch, before / after: {before / after:.0f}x "
        f"({before * 1000:.0f} → {after * 1000:.0f} ms, median of {args.tries}; "
        f"max {max(ingested['a batch (before)']) * 1000:.0f} → {max(ingested['a batch']) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
