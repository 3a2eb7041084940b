"""How long a person's correction waits for a VEE round under way: measured, not timed in a test.

A VEE batch holds its meters' turns (:mod:`collector.meter_turns`) from before it loads their reads
until it commits its flags and estimates; a correction (``PUT /meters/{id}/readings/{ts}``,
:func:`collector.vee.editing.edit_reading`) takes its meter's turn exclusively, so it waits for the
batch under way. The turns are 64 buckets of meters (by ``hashtext``): a batch of 2,000 meters
holds nearly all of them, so a correction of any meter, in the batch or not, waits for it. The
next batch asks for the turns after the correction and waits for it: a correction waits for one
batch at most, never the whole round.

Here a round runs over a labelled fleet (``simulators.fleet``, 1 % of reads missing) after the
go-live round; the correction of one meter's read (its value kept, confirmed) starts the moment the
round's first batch holds the turns, the worst case, and is timed to its commit. Beside it: the same
correction with no round under way, and the round's batches' mean time (the round's time over its
batches; its consumption refresh after them included). Needs TimescaleDB, started as the test
fixtures start it (tests/services.py; ``AQUAMI_TEST_DATABASE_URL`` points at another).

    python -m benchmarks.vee_correction_wait [--meters 2000] [--tries 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

import psycopg

from benchmarks.bench_detection_fetch import fleet_database
from collector.meter_turns import KEY, person_takes_turn
from collector.vee.config import VeeConfig
from collector.vee.editing import edit_reading
from collector.vee.rounds import ROUND_DAYS, vee_round
from simulators.fleet import FleetSpec, generate_fleet

_TURNS_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND mode = 'ShareLock' AND granted"
)
_REFRESHING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
    "AND query LIKE 'SELECT refresh_consumption(%%'"
)


class Wait(NamedTuple):
    """A correction's seconds: waiting for its meter's turn, then the rest to its commit (its write and
    its consumption refresh, which waits for a round's refresh that wrote the meter's rows first)."""

    turn: float
    rest: float

    @property
    def total(self) -> float:
        return self.turn + self.rest


def _correct(db: str, meter_id: str, ts: datetime) -> Wait:
    """A person's correction of ``meter_id``'s read at ``ts`` (its stored value, confirmed), in its own
    transaction; its turn taken first, as :func:`edit_reading` takes it (taken again there: held)."""
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT volume_m3 FROM readings WHERE meter_id = %s AND ts = %s", (meter_id, ts)).fetchone()
        assert row is not None, (meter_id, ts)
        volume = Decimal(row[0])
        conn.commit()
        started = time.perf_counter()
        with conn.transaction():
            person_takes_turn(conn, meter_id)
            turn = time.perf_counter()
            edit_reading(
                conn, meter_id, ts, volume, by="measurement", reason="a wait measured", out_of_sequence_confirmed=True
            )
        return Wait(turn - started, time.perf_counter() - turn)


def _wait_until(db: str, query: str, params: tuple[object, ...], what: str, timeout_s: float = 300.0) -> None:
    """Until ``query`` counts something: a VEE batch holding meters' turns (shared advisory locks of
    :data:`KEY`), or the round refreshing consumption."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(db, autocommit=True) as conn:
        while not (row := conn.execute(query, params).fetchone()) or not row[0]:
            if time.monotonic() > deadline:
                raise SystemExit(f"no VEE round came to {what}")
            time.sleep(0.005)


def _during_a_round(
    db: str, at: datetime, config: VeeConfig, when: str, meter_id: str, ts: datetime
) -> tuple[Wait, float]:
    """A round at ``at`` in a thread, and the correction started ``when`` it comes to "a batch" (its
    first batch holds the turns) or "the refresh" (its consumption refresh): the correction's wait
    and the round's seconds."""
    laps: list[float] = []

    def run_round() -> None:
        started = time.perf_counter()
        vee_round(db, at, config)
        laps.append(time.perf_counter() - started)

    round_thread = threading.Thread(target=run_round)
    round_thread.start()
    try:
        if when == "a batch":
            _wait_until(db, _TURNS_HELD, (KEY,), "its first batch")
        else:
            _wait_until(db, _REFRESHING, (), "its consumption refresh")
        wait = _correct(db, meter_id, ts)
    finally:
        round_thread.join()
    return wait, laps[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--tries", type=int, default=3, help="rounds, each with a correction; median")
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
        waits: dict[str, list[Wait]] = {"a batch": [], "the refresh": []}
        rounds: list[float] = []
        for k in range(args.tries):
            for j, when in enumerate(waits):
                at, ts = now + timedelta(hours=1 + 2 * k + j), newest - timedelta(hours=4 * k + 2 * j + 5)
                wait, round_s = _during_a_round(db, at, config, when, meter_id, ts)
                waits[when].append(wait)
                rounds.append(round_s)
                print(
                    f"[{k + 1}] a correction starting as a round comes to {when}: {wait.total:.2f} s (its turn "
                    f"{wait.turn:.2f} s, the rest {wait.rest:.2f} s); the round {round_s:.2f} s",
                    flush=True,
                )
    print(f"a correction alone: {statistics.median(alone) * 1000:.0f} ms (median of {args.tries})")
    print(f"a round: {statistics.median(rounds):.2f} s for {batches} batches of up to {config.batch_meters:,} meters")
    for when, seconds in waits.items():
        print(
            f"a correction starting as the round comes to {when}: {statistics.median(w.total for w in seconds):.2f} s, "
            f"its turn {statistics.median(w.turn for w in seconds):.2f} s (median of {args.tries})"
        )


if __name__ == "__main__":
    main()
