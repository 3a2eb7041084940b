"""How long the collector's writer stalls while a VEE round refreshes consumption, with a person's
correction made during the refresh: each message's seconds to its commit, max and p99.

The collector's writer (:class:`collector.store.ReadingStore`) stores a message of ``--ingest-meters``
meters' next reads every ``--every-ms`` while a round runs over a labelled fleet (``simulators.fleet``,
1 % of reads missing, after the go-live round). When the round comes to its consumption refresh (the
whole fleet's last two days, holding the refreshes' turn, 'cons', until it commits), a person corrects
a read of one of the message's meters (its value kept, confirmed). The messages under way from then
until the round and the correction are done are the ones counted. A sampler notes what the writer's
session waits for (``pg_locks``, ``pg_blocking_pids``) and what the session it waits for is doing.

- no correction: the refresh alone. Ingest takes no lock the refresh holds (the refresh reads
  ``readings`` and writes only the consumption tables): no stall.
- before: the correction holds its meter's turn (:mod:`collector.meter_turns`, a bucket of 64) when it
  comes to the refreshes' turn, as every correction did before: it took its meter's turn, checked and
  wrote its read, then waited there for the round's refresh. The message, whose meters fall in every
  bucket, waits for the correction, so for the rest of the refresh. (Run here by taking the meter's
  turn before :func:`collector.vee.editing.edit_reading`, which then gives way to the refresh with
  that turn still held, as before.)
- after: :func:`collector.vee.editing.edit_reading` as it is: the correction tries the refreshes' turn
  and, a refresh holding it, gives way holding neither turn and is done again once the refresh is.

The other writers that take the refreshes' turn, one mode each (``--modes``), made during the refresh
as the correction is:

- a read supplied: :func:`collector.vee.editing.substitute_reading` of one of the message's meters,
  half an hour after one of its reads (the same give-way as a correction).
- a job card: ``aquami server register-meters`` of a file re-fitting one of the message's meters at a
  new service point (:func:`server.meters.meters_file.record_meters_file`, which gives way to the
  refresh holding nothing). "a job card (before)": the command's transaction as it was, the meter's
  row of ``meters`` written, then its installation, whose statement trigger takes the refreshes' turn
  (server migration 0083) and waited there for the round's refresh holding the meter's row. The
  writer, its meters known, writes no row of ``meters``: neither should hold it up.
- a job card of a meter first heard (and its "(before)"): the same of a new meter; once the job card comes
  to the turn, the writer's messages carry that meter's reads too (a meter fitted, its gateway heard
  before the clerk's file committed), so the writer registers it (``INSERT … ON CONFLICT DO NOTHING``
  on the row the job card inserted and has not committed).
- a withdrawal: ``aquami server withdraw-installation`` of an installation of one of the message's
  meters recorded before the rounds (its DELETE's statement trigger takes the turn before any row).
- the time zone changed: ``aquami collector timezone`` (``set_utility_timezone``, which takes the turn
  before it writes anything, then recomputes every stored hour: long).

Needs TimescaleDB, started as the test fixtures start it (tests/services.py; ``AQUAMI_TEST_DATABASE_URL``
points at another).

    python -m benchmarks.ingest_beside_a_refresh [--meters 2000] [--tries 3] [--ingest-meters 1000] [--every-ms 50]
        [--modes "no correction,before,after"]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from benchmarks.bench_detection_fetch import fleet_database
from collector.batch_parser import ReadingRow
from collector.meter_turns import REFRESHES_KEY, person_takes_turn
from collector.store import ReadingStore
from collector.vee.config import VeeConfig
from collector.vee.editing import edit_reading, substitute_reading
from collector.vee.rounds import ROUND_DAYS, vee_round
from server.meters.meters_file import record_meters_file
from server.meters.repository import (
    Installation,
    cards_against_reads,
    cards_changed,
    place_service_points,
    record_installations,
    recorded_cards,
    register_meters,
)
from server.meters.withdrawals import refuse_withdrawn, withdraw_installation
from server.withdrawal import Withdrawal
from simulators.fleet import FleetSpec, generate_fleet

#: The modes run unless ``--modes`` says otherwise: the correction's, as 376b2e6 measured them.
MODES = ("no correction", "before", "after")
#: Every mode: the correction's, and the other writers that take the refreshes' turn.
ALL_MODES = (
    *MODES,
    "a read supplied",
    "a job card (before)",
    "a job card",
    "a job card of a meter first heard (before)",
    "a job card of a meter first heard",
    "a withdrawal",
    "the time zone changed",
)
#: A session of this database waiting for the refreshes' turn ('cons').
_WAITING_FOR_THE_TURN = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.datname = current_database() "
    "AND a.pid = %s AND l.locktype = 'advisory' AND l.classid = 0 AND l.objid = %s AND NOT l.granted"
)

_REFRESHING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
    "AND query LIKE 'SELECT refresh_consumption(%'"
)
#: What each waiting session waits for, and what the session holding it up is doing.
_WAITS = r"""
SELECT l.locktype, l.classid, l.objid, l.mode, left(regexp_replace(b.query, '\s+', ' ', 'g'), 60)
FROM pg_stat_activity a
JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
LEFT JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid) ON true
LEFT JOIN pg_stat_activity b ON b.pid = blocker.pid
WHERE a.datname = current_database() AND a.application_name = %s
"""
#: The writer's connection's name, for the sampler to find its session by.
WRITER_NAME = "aquami-bench-writer"


class Writer(threading.Thread):
    """The collector's writer storing a message of the meters' next reads every ``every_s``: each
    message's start (``perf_counter``) and seconds to its commit."""

    def __init__(self, store: ReadingStore, registers: list[tuple[str, str]], newest: datetime, every_s: float):
        super().__init__(daemon=True)
        self.store, self.registers, self.newest, self.every_s = store, registers, newest, every_s
        self.laps: list[tuple[float, float]] = []
        self.lapped = threading.Condition()
        self.stop = threading.Event()
        self.minute = 0

    def message(self) -> list[ReadingRow]:
        self.minute += 1
        at = (self.newest + timedelta(minutes=self.minute)).isoformat()
        return [(meter_id, at, volume, None, None, [], "GW-BENCH", self.minute) for meter_id, volume in self.registers]

    def run(self) -> None:
        while not self.stop.is_set():
            rows = self.message()
            started = time.perf_counter()
            self.store.write(rows)
            with self.lapped:
                self.laps.append((started, time.perf_counter() - started))
                self.lapped.notify_all()
            self.stop.wait(self.every_s)


class Sampler(threading.Thread):
    """What the writer's session (:data:`WRITER_NAME`) waits for, sampled every 10 ms: a count of each."""

    def __init__(self, db: str):
        super().__init__(daemon=True)
        self.db = db
        self.seen: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.db, autocommit=True) as conn:
            while not self.stop.wait(0.01):
                for locktype, classid, objid, mode, blocker in conn.execute(_WAITS, (WRITER_NAME,)).fetchall():
                    self.seen[f"{locktype} ({classid}, {objid}) {mode}, held by: {blocker}"] += 1


def _wait_until_refreshing(db: str, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(db, autocommit=True) as conn:
        while not (row := conn.execute(_REFRESHING).fetchone()) or not row[0]:
            if time.monotonic() > deadline:
                raise SystemExit("no VEE round came to its consumption refresh")
            time.sleep(0.005)


def _job_card(conn: psycopg.Connection, installation: Installation, before: bool) -> None:
    """``aquami server register-meters`` of a file of one row, ``installation`` (its meter a customer
    of its DMA): the command's transaction (aquami/commands/server.py); ``before``, as it was before it
    gave way to a refresh."""
    if not before:
        meters = [(installation.meter_id, installation.dma, "customer")]
        record_meters_file(conn, meters, None, [installation], ("removed_at",), reinstate_withdrawn=False)
        return
    register_meters(conn, [(installation.meter_id, installation.dma, "customer")], bulk=None)
    refuse_withdrawn(conn, [installation], "", reinstate=False)
    cards_before = recorded_cards(conn, [installation.meter_id])
    record_installations(conn, [installation])
    place_service_points(conn, [installation.meter_id])
    cards_against_reads(conn, cards_changed([installation], cards_before))


def _heard_once_waiting(db: str, pid: int, writer: Writer, meter_id: str) -> threading.Thread:
    """A thread that, once the session ``pid`` waits for the refreshes' turn, has the writer's messages
    carry ``meter_id``'s reads too."""

    def run() -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            while not (row := conn.execute(_WAITING_FOR_THE_TURN, (pid, REFRESHES_KEY)).fetchone()) or not row[0]:
                time.sleep(0.005)
        writer.registers.append((meter_id, "0.001"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _correct(db: str, mode: str, meter_id: str, ts: datetime, k: int = 0, writer: Writer | None = None) -> float:
    """A person's correction of ``meter_id``'s read at ``ts`` (its value, confirmed), or in another mode
    that mode's writer (the ``k``-th trial's): seconds to commit."""
    with psycopg.connect(db) as conn:
        dma = conn.execute("SELECT dma FROM meters WHERE meter_id = %s", (meter_id,)).fetchone()
        row = conn.execute("SELECT volume_m3 FROM readings WHERE meter_id = %s AND ts = %s", (meter_id, ts)).fetchone()
        assert dma is not None and (row is not None or mode not in ("before", "after", "a read supplied")), (
            meter_id,
            ts,
        )
        volume = Decimal(row[0]) if row is not None else Decimal(0)
        conn.commit()
        heard = None
        if mode.startswith("a job card of a meter first heard"):
            assert writer is not None
            heard = _heard_once_waiting(db, conn.info.backend_pid, writer, f"BENCH-NEW-{k}-{len(mode)}")
        started = time.perf_counter()
        with conn.transaction():
            if mode == "before":
                person_takes_turn(conn, meter_id)  # its meter's turn held while it waits for the refresh
            if mode in ("before", "after"):
                edit_reading(conn, meter_id, ts, volume, by="measurement", reason="a stall measured",
                             out_of_sequence_confirmed=True)  # fmt: skip
            elif mode == "a read supplied":
                substitute_reading(conn, meter_id, ts + timedelta(minutes=30), volume, by="measurement",
                                   reason="a stall measured", out_of_sequence_confirmed=True)  # fmt: skip
            elif mode.startswith("a job card of a meter first heard"):
                new = f"BENCH-NEW-{k}-{len(mode)}"
                _job_card(conn, Installation(new, f"SP-{new}", dma[0], ts), mode.endswith("(before)"))
            elif mode.startswith("a job card"):
                _job_card(
                    conn, Installation(meter_id, f"SP-BENCH-{k}-{len(mode)}", dma[0], ts), mode.endswith("(before)")
                )
            elif mode == "a withdrawal":
                withdraw_installation(conn, meter_id, ts, Withdrawal("measurement", "a stall measured"))
            elif mode == "the time zone changed":
                conn.execute("SELECT set_utility_timezone(%s)", ("Europe/London" if k % 2 == 0 else "UTC",))
            else:
                raise ValueError(f"no such mode: {mode!r}")
        if heard is not None:
            heard.join()
        return time.perf_counter() - started


Trial = tuple[list[float], Counter[str], float]


def _trial(db: str, writer: Writer, at: datetime, mode: str, meter_id: str, ts: datetime, k: int = 0) -> Trial:
    """A round at ``at`` with the writer storing messages, and in ``mode`` a correction once the round
    refreshes: the seconds of each message under way from then until the round and the correction are
    done, what the writer waited for, and the correction's seconds."""
    sampler = Sampler(db)
    round_thread = threading.Thread(target=vee_round, args=(db, at, VeeConfig()))
    corrected: list[float] = []
    first = len(writer.laps)
    round_thread.start()
    _wait_until_refreshing(db)
    began = time.perf_counter()
    sampler.start()
    if mode != "no correction":
        correction = threading.Thread(target=lambda: corrected.append(_correct(db, mode, meter_id, ts, k, writer)))
        correction.start()
        correction.join()
    round_thread.join()
    ended = time.perf_counter()
    with writer.lapped:  # the message under way then stored too
        writer.lapped.wait_for(lambda: writer.laps[-1][0] > ended)
    sampler.stop.set()
    sampler.join()
    laps = [seconds for started, seconds in writer.laps[first:] if started <= ended and started + seconds >= began]
    return laps, sampler.seen, corrected[0] if corrected else 0.0


def _p99(laps: list[float]) -> float:
    return statistics.quantiles(laps, n=100, method="inclusive")[98] if len(laps) > 1 else laps[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--tries", type=int, default=3, help="rounds of each mode")
    parser.add_argument("--ingest-meters", type=int, default=1_000, help="meters in each message")
    parser.add_argument("--every-ms", type=float, default=50.0, help="pause between two messages")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(ALL_MODES)}")
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    if unknown := set(modes) - set(ALL_MODES):
        parser.error(f"no such mode: {', '.join(sorted(unknown))}")

    config = VeeConfig()
    spec = FleetSpec(meters=args.meters, days=config.profile_lookback_days + ROUND_DAYS + 2, seed=args.seed,
                     missing_read_fraction=0.01)  # fmt: skip
    fleet = generate_fleet(spec)
    now = fleet.timestamps[-1].astype("datetime64[us]").item().replace(tzinfo=UTC)
    laps: dict[str, list[float]] = {mode: [] for mode in modes}
    waits: dict[str, Counter[str]] = {mode: Counter() for mode in modes}
    corrections: dict[str, list[float]] = {mode: [] for mode in modes}
    with fleet_database(fleet) as db:
        started = time.perf_counter()
        vee_round(db, now, config)  # the go-live round: every meter new
        print(f"the go-live round {time.perf_counter() - started:.1f} s", flush=True)
        with psycopg.connect(db) as conn:
            newest = conn.execute("SELECT max(ts) FROM readings").fetchone()[0]  # type: ignore[index]
            registers = conn.execute(
                "SELECT meter_id, volume_m3::text FROM readings WHERE ts = %s ORDER BY meter_id LIMIT %s",
                (newest, args.ingest_meters),
            ).fetchall()
        # a meter of the message for each trial's job card or withdrawal (a correction's is the first)
        trials = [(k, j, mode) for k in range(args.tries) for j, mode in enumerate(modes)]
        of_trial = {(k, j): registers[(1 + len(modes) * k + j) % len(registers)][0] for k, j, _ in trials}
        with psycopg.connect(db) as conn:  # the installations withdrawn, recorded before the rounds
            dmas: dict[str, str | None] = {m: d for m, d in conn.execute("SELECT meter_id, dma FROM meters")}
            for k, j, mode in trials:
                if mode == "a withdrawal":
                    meter = of_trial[k, j]
                    point, since = f"SP-BENCH-W-{k}", newest - timedelta(hours=2 * (len(modes) * k + j) + 5)
                    record_installations(conn, [Installation(meter, point, dmas[meter], since)])
            conn.commit()
        store = ReadingStore(f"{db}{'&' if '?' in db else '?'}application_name={WRITER_NAME}", check_gateways=False)
        writer = Writer(store, registers, newest, args.every_ms / 1000)
        try:
            store.write(writer.message())  # (the writer's connection and its meters looked up: not timed)
            alone = []
            for _ in range(20):
                rows = writer.message()
                t = time.perf_counter()
                store.write(rows)
                alone.append(time.perf_counter() - t)
            writer.start()
            meter_id = registers[0][0]
            for k, j, mode in trials:
                at = now + timedelta(hours=1 + len(modes) * k + j)
                ts = newest - timedelta(hours=2 * (len(modes) * k + j) + 5)
                meter = meter_id if mode in ("before", "after", "a read supplied") else of_trial[k, j]
                seconds, seen, corrected = _trial(db, writer, at, mode, meter, ts, k)
                laps[mode] += seconds
                waits[mode] += seen
                corrections[mode].append(corrected)
                said = f"; the writer's {corrected:.2f} s" if mode != "no correction" else ""
                most = max(seconds) * 1000
                print(
                    f"[{k + 1}] {mode}: {len(seconds)} messages during the refresh, max {most:.0f} ms{said}",
                    flush=True,
                )
        finally:
            writer.stop.set()
            if writer.ident is not None:
                writer.join()
            store.close()
    print(f"{args.meters:,} meters; messages of {args.ingest_meters:,} meters' reads every {args.every_ms:.0f} ms; "
          f"a message alone {statistics.median(alone) * 1000:.0f} ms (median of {len(alone)})")  # fmt: skip
    for mode in modes:
        seconds = laps[mode]
        print(
            f"{mode}: {len(seconds)} messages stored during the round's refresh ({args.tries} rounds): "
            f"max {max(seconds) * 1000:.0f} ms, p99 {_p99(seconds) * 1000:.0f} ms, "
            f"median {statistics.median(seconds) * 1000:.0f} ms"
            + (
                f"; the writer (correction, job card, ...) {statistics.median(corrections[mode]):.2f} s (median)"
                if mode != "no correction"
                else ""
            )
        )
        for what, count in waits[mode].most_common(3):
            print(f"    the writer waited for {what} ({count} samples of 10 ms)")
    if "before" not in laps or "after" not in laps:
        return
    before, after = laps["before"], laps["after"]
    print(
        f"before / after: max {max(before) / max(after):.1f}x ({max(before) * 1000:.0f} → {max(after) * 1000:.0f} ms), "
        f"p99 {_p99(before) / _p99(after):.1f}x ({_p99(before) * 1000:.0f} → {_p99(after) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
